//! One exchange on a checked-out connection: the request goes out (its
//! body streamed) while the response head is awaited; 1xx heads are
//! skipped. The result is the response, or a failure that says whether the
//! request may be sent again (`SendFailure`).

use std::future::poll_fn;
use std::task::Poll;

use http::Response;

use crate::upstream::h1::{self, ResponseFraming};

use super::body::UpstreamBody;
use super::upload::{Upload, UploadError};
use super::{Conn, Resend, SendFailure, Timeouts, UpstreamError};

impl Conn {
    pub(super) async fn exchange(
        mut self,
        upload: Upload,
        method: http::Method,
        timeouts: Timeouts,
    ) -> Result<Response<UpstreamBody>, SendFailure> {
        let timeout = timeouts.response;
        let had_body = upload.body.is_some();
        // Kept only while it could be needed: a bodyless request on a
        // reused connection (the keep-alive race).
        let again = (self.reused && !had_body).then(|| upload.out.first.clone()).flatten();
        let mut upload = Some(upload);
        let mut upload_failed = false;
        let mut written_any = false;
        let mut read_any = false;
        let method_ref = &method;
        // One timer for both phases: the upload's deadline while the body is
        // going out, then the response's once it is out.
        let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
        let mut timing_upload = false;

        let result = poll_fn(|cx| {
            loop {
                if let Some(up) = upload.as_mut() {
                    let polled = up.poll(cx, &mut self.wire.io);
                    written_any |= up.written_any;
                    match polled {
                        Poll::Ready(Ok(())) => {
                            upload = None;
                            if timing_upload {
                                timing_upload = false;
                                timer.set(None);
                            }
                        }
                        Poll::Ready(Err(UploadError::Client(e))) => {
                            return Poll::Ready(Err(UpstreamError::ClientBody(e)))
                        }
                        Poll::Ready(Err(UploadError::Upstream(e))) if !written_any => {
                            return Poll::Ready(Err(UpstreamError::Write(e)))
                        }
                        // The upstream stopped reading mid-request; it may
                        // still have answered (413, 401...): look for that.
                        Poll::Ready(Err(UploadError::Upstream(e))) => {
                            tracing::debug!(error = %e, "upstream stopped reading the request");
                            upload = None;
                            upload_failed = true;
                            if timing_upload {
                                timing_upload = false;
                                timer.set(None);
                            }
                        }
                        Poll::Pending => {}
                    }
                }
                if !self.wire.rbuf.is_empty() {
                    if let Some(head) = h1::parse_response_head(&mut self.wire.rbuf, method_ref)? {
                        if head.status.is_informational() && head.framing != ResponseFraming::Upgrade {
                            continue; // 100 Continue, 103 Early Hints: the real answer follows.
                        }
                        return Poll::Ready(Ok(head));
                    }
                }
                match self.wire.poll_fill(cx) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(UpstreamError::ClosedBeforeHead)),
                    Poll::Ready(Ok(_)) => read_any = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(UpstreamError::Read(e))),
                    Poll::Pending => {
                        // Waiting: for the rest of the upload (its own
                        // deadline) or for the answer (the response timeout,
                        // from when the request is out).
                        if timer.is_none() {
                            timing_upload = upload.is_some();
                            let limit = if timing_upload { timeouts.upload } else { timeout };
                            timer.set(Some(tokio::time::sleep(limit)));
                        }
                        if let Some(t) = timer.as_mut().as_pin_mut() {
                            if std::future::Future::poll(t, cx).is_ready() {
                                return Poll::Ready(Err(match &upload {
                                    Some(up) if timing_upload && up.waiting_on_client => {
                                        UpstreamError::ClientBodyTimeout(timeouts.upload)
                                    }
                                    Some(_) if timing_upload => UpstreamError::ResponseTimeout(timeouts.upload),
                                    _ => UpstreamError::ResponseTimeout(timeout),
                                }));
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
        })
        .await;

        match result {
            Ok(head) => {
                // An answer before the request was sent whole (a 413, or a
                // 400 to a head it could not parse) leaves the upstream's
                // parser state unknown: never reuse that connection.
                let keep_alive = head.keep_alive && !upload_failed && upload.is_none();
                let body = UpstreamBody::new(self, head.framing, keep_alive, upload.map(Box::new), timeout);
                let mut resp = Response::new(body);
                *resp.status_mut() = head.status;
                *resp.version_mut() = head.version;
                *resp.headers_mut() = head.headers;
                Ok(resp)
            }
            Err(e) => {
                // Only a request without a body can be handed back whole.
                let again = again.filter(|_| !read_any).map(|head| Resend { head, method });
                Err(match (e, again) {
                    (e @ UpstreamError::Write(_), Some(again)) if !written_any => SendFailure::NotSent(again, e),
                    (
                        e @ (UpstreamError::Write(_) | UpstreamError::Read(_) | UpstreamError::ClosedBeforeHead),
                        Some(again),
                    ) => SendFailure::NoResponse(again, e),
                    (e, _) => SendFailure::Failed(e),
                })
            }
        }
    }
}
