//! Validation of `[access_log]` and its syslog sink, with the rules of
//! `validate.rs` (every problem reported with its dotted key).
//!
//! What would only fail once the writer runs is refused at `spillway
//! check`: a sink that needs a path or a syslog table without one, a syslog
//! address without a port (Papertrail gives every account its own), a CA
//! file that cannot be read or holds no certificate, an APP-NAME RFC 5424
//! does not allow, a sample outside 0..=1.

use super::raw::*;
use super::types::*;
use super::validate::Checker;

/// RFC 5424 §6.2.5: APP-NAME is 1*48PRINTUSASCII.
const APP_NAME_MAX: usize = 48;

pub(super) fn access_log(c: &mut Checker, raw: RawAccessLog) -> AccessLogConfig {
    let format = match raw.format.as_deref().unwrap_or("json") {
        "json" => LogFormat::Json,
        "combined" => LogFormat::Combined,
        other => {
            c.fail("access_log.format", format!("unknown format {other:?}: expected \"json\" or \"combined\""));
            LogFormat::Json
        }
    };
    let sample = raw.sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) {
        c.fail("access_log.sample", format!("{sample} is not a share between 0 and 1"));
    }
    let queue = raw.queue.unwrap_or(DEFAULT_ACCESS_LOG_QUEUE);
    if queue == 0 {
        c.fail("access_log.queue", "must be greater than zero");
    }
    AccessLogConfig {
        enabled: raw.enabled.unwrap_or(true),
        format,
        sink: sink(c, raw.sink.as_deref(), raw.path, raw.syslog),
        queue,
        sample,
        include_query: raw.include_query.unwrap_or(false),
    }
}

fn sink(c: &mut Checker, name: Option<&str>, path: Option<String>, syslog: Option<RawSyslog>) -> LogSink {
    let name = name.unwrap_or("stdout");
    if path.is_some() && name != "file" {
        c.fail("access_log.path", "only a `sink = \"file\"` has a path");
    }
    if syslog.is_some() && name != "syslog" {
        c.fail("access_log.syslog", "only a `sink = \"syslog\"` has a syslog table");
    }
    match (name, path, syslog) {
        ("stdout", _, _) => LogSink::Stdout,
        ("file", Some(path), _) if !path.is_empty() => LogSink::File(c.resolve(&path)),
        ("file", _, _) => {
            c.fail("access_log.path", "a file sink needs a path");
            LogSink::Stdout
        }
        ("syslog", _, Some(s)) => LogSink::Syslog(self::syslog(c, s)),
        ("syslog", _, None) => {
            c.fail("access_log.syslog", "a syslog sink needs `syslog = { address = \"host:port\" }`");
            LogSink::Stdout
        }
        (other, _, _) => {
            c.fail("access_log.sink", format!("unknown sink {other:?}: expected \"stdout\", \"file\" or \"syslog\""));
            LogSink::Stdout
        }
    }
}

fn syslog(c: &mut Checker, raw: RawSyslog) -> SyslogConfig {
    let (host, port) = match host_port(&raw.address) {
        Ok(hp) => hp,
        Err(e) => {
            c.fail("access_log.syslog.address", e);
            (String::new(), 0)
        }
    };
    let ca_pem = raw.ca_file.map(|path| {
        let (full, pem) = c.read_file("access_log.syslog.ca_file", &path);
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
        match certs {
            Ok(list) if !list.is_empty() => {}
            // A read failure was reported by `read_file`.
            _ if pem.is_empty() => {}
            _ => c.fail("access_log.syslog.ca_file", format!("{}: no PEM certificate", full.display())),
        }
        pem
    });
    let app_name = raw.app_name.unwrap_or_else(|| DEFAULT_SYSLOG_APP_NAME.to_string());
    if app_name.is_empty() || app_name.len() > APP_NAME_MAX || !app_name.bytes().all(|b| (33..=126).contains(&b)) {
        c.fail("access_log.syslog.app_name", "1 to 48 printable ASCII characters, no space (RFC 5424 APP-NAME)");
    }
    SyslogConfig { address: raw.address, host, port, ca_pem, app_name }
}

/// `host:port` (IPv6 literals in brackets), the port above 0.
fn host_port(text: &str) -> Result<(String, u16), String> {
    let missing = || format!("{text:?} has no port: expected host:port, e.g. \"logs1.papertrailapp.com:12345\"");
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']').ok_or_else(missing)?;
            (host, after.strip_prefix(':').ok_or_else(missing)?)
        }
        None => text.rsplit_once(':').filter(|(h, _)| !h.contains(':')).ok_or_else(missing)?,
    };
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_string(), p)),
        _ => Err(format!("{text:?}: {port:?} is not a port")),
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn a_syslog_address_needs_a_host_and_a_port() {
        assert_eq!(host_port("logs1.papertrailapp.com:12345"), Ok(("logs1.papertrailapp.com".into(), 12345)));
        assert_eq!(host_port("[::1]:514"), Ok(("::1".into(), 514)));
        for bad in ["logs1.papertrailapp.com", "logs:0", ":514", "[::1]", "::1", "host:port", "h:70000"] {
            assert!(host_port(bad).is_err(), "{bad} is refused");
        }
    }
}
