# Markdown report of the throughput mode (benches/load/run).
# Input 1, runs.tsv (one row per recorded wrk run):
#   round target t0 t1 requests rps p50_us p99_us cpu_us_per_req errors other_pct syscalls [user_us_per_req]
# Input 2, optional strace.tsv (the --syscalls strace fallback):
#   target syscalls requests
# Variables: order (space-separated targets), sysmode (perf|strace|none).

function median(key,    n, i, j, v, tmp) {
    n = cnt[key]
    if (n == 0) return ""
    for (i = 1; i <= n; i++) tmp[i] = val[key, i]
    for (i = 2; i <= n; i++) { # insertion sort: n is a handful of rounds
        v = tmp[i]
        for (j = i - 1; j >= 1 && tmp[j] > v; j--) tmp[j + 1] = tmp[j]
        tmp[j + 1] = v
    }
    return n % 2 ? tmp[(n + 1) / 2] : (tmp[n / 2] + tmp[n / 2 + 1]) / 2
}
function add(t, m, v) { val[t SUBSEP m, ++cnt[t SUBSEP m]] = v }
function label(t) {
    return t == "direct" ? "direct (origin)" : t == "spillway" ? "Spillway" : t == "haproxy" ? "HAProxy" : "nginx proxy"
}
function ms(us) { return us == "" ? "–" : us >= 1000 ? sprintf("%.2f ms", us / 1000) : sprintf("%.0f µs", us) }
function num(v, fmt) { return v == "" ? "–" : sprintf(fmt, v) }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "–" : sprintf("%.2f×", a / b) }
function verdict(ok) { return ok ? "**met**" : "**not met**" }

FILENAME ~ /strace\.tsv$/ {
    if ($3 > 0) strace_sys[$1] = $2 / $3
    next
}
{
    t = $2
    add(t, "rps", $6); add(t, "p50", $7); add(t, "p99", $8)
    add(t, "cpu", $9); add(t, "err", $10); add(t, "other", $11)
    if (NF >= 12 && $12 != "NA" && $5 > 0) add(t, "sys", $12 / $5)
    if (NF >= 13) add(t, "user", $13)
    rows[++nrows] = $0
}
END {
    nt = split(order, targets, " ")
    for (i = 1; i <= nt; i++) {
        t = targets[i]
        split("rps p50 p99 cpu err other sys user", ms_, " ")
        for (k = 1; k <= 8; k++) med[t, ms_[k]] = median(t SUBSEP ms_[k])
        if (t in strace_sys) med[t, "sys"] = strace_sys[t]
    }
    sysmark = sysmode == "strace" ? " †" : ""

    print "## Medians per target"
    print ""
    print "| target | req/s | p50 | p99 | CPU µs/req | user µs/req | req per CPU-second | syscalls/req" sysmark " | other CPU % | errors |"
    print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (i = 1; i <= nt; i++) {
        t = targets[i]
        c = med[t, "cpu"]
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label(t), num(med[t, "rps"], "%.0f"),
            ms(med[t, "p50"]), ms(med[t, "p99"]), num(c, "%.1f"), num(med[t, "user"], "%.1f"), (c > 0 ? sprintf("%.0f", 1e6 / c) : "–"),
            num(med[t, "sys"], "%.2f"), num(med[t, "other"], "%.0f"), num(med[t, "err"], "%d")
    }
    print ""
    print "Calibration (issue 2, same kind of machine, c=50): HAProxy 2.6 ≈ 15 µs CPU and 4.2 syscalls per request, ~58 k req/s;"
    print "nginx 1.22 ≈ 13 µs and 5.1 syscalls, ~72 k req/s; origin ~83 k req/s direct, in a quiet moment."
    print ""

    s = "spillway"
    if (!((s, "rps") in med) || med[s, "rps"] == "") {
        print "_Spillway was not measured in this run: no ratios._"
        print ""
    } else {
        print "## Ratios of medians (Spillway / peer)"
        print ""
        print "| ratio | throughput (req/s) | CPU µs/req (lower is better) | per-core efficiency (higher is better) | p99 (lower is better) | syscalls/req |"
        print "|---|--:|--:|--:|--:|--:|"
        for (i = 1; i <= nt; i++) {
            p = targets[i]
            if (p == s) continue
            printf "| Spillway / %s | %s | %s | %s | %s | %s |\n", label(p), ratio(med[s, "rps"], med[p, "rps"]),
                ratio(med[s, "cpu"], med[p, "cpu"]), ratio(med[p, "cpu"], med[s, "cpu"]),
                ratio(med[s, "p99"], med[p, "p99"]), ratio(med[s, "sys"], med[p, "sys"])
        }
        print ""
        if (med["haproxy", "cpu"] != "") {
            eff = med["haproxy", "cpu"] / med[s, "cpu"]
            print "Issue-2 targets against HAProxy in this run:"
            print ""
            printf "- CPU per request no higher than HAProxy's (per-core efficiency ≥ 1.00×): %.2f× — %s\n", eff, verdict(eff >= 1)
            printf "- p99 no worse than HAProxy's at %s: %s vs %s — %s\n", "this concurrency", ms(med[s, "p99"]), ms(med["haproxy", "p99"]),
                verdict(med[s, "p99"] <= med["haproxy", "p99"])
            printf "- team goal, 1.25× HAProxy per core: %s\n", verdict(eff >= 1.25)
            print ""
        }
        print "For 'direct', the CPU ratio compares Spillway's cost per proxied request with the origin's cost per served request."
        print ""
    }

    print "## Every recorded run (interleaved order)"
    print ""
    print "| round | target | req/s | p50 | p99 | CPU µs/req | user µs/req | syscalls/req | other CPU % | errors |"
    print "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (i = 1; i <= nrows; i++) {
        split(rows[i], f, "\t")
        sy = (f[12] != "" && f[12] != "NA" && f[5] > 0) ? sprintf("%.2f", f[12] / f[5]) : "–"
        us = f[13] != "" ? sprintf("%.1f", f[13]) : "–"
        printf "| %s | %s | %s | %s | %s | %.1f | %s | %s | %s | %s |\n", f[1], label(f[2]), f[6], ms(f[7]), ms(f[8]), f[9], us, sy, f[11], f[10]
    }
    if (sysmode == "strace") {
        print ""
        print "† syscalls counted with strace -c -f in a separate short run per target (strace slows the traced process; only this column comes from it)."
    }
}
