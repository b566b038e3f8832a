# Markdown report of the callgrind mode (benches/load/run --callgrind N).
# Input callgrind.tsv: target ir_idle ir_with_n_requests failed_requests
# Variable: n (requests per loaded run).

function label(t) {
    return t == "spillway" ? "Spillway" : t == "haproxy" ? "HAProxy" : "nginx proxy"
}
function calib(t) { return t == "haproxy" ? "30.6 k (2.6)" : t == "nginx" ? "20.7 k (1.22)" : "–" }

{
    order[++nt] = $1
    per[$1] = ($3 - $2) / n
    idle[$1] = $2; full[$1] = $3; fail[$1] = $4
}
END {
    print "## User-space instructions per request (callgrind)"
    print ""
    print "| target | Ir, start+stop | Ir, start+" n " requests+stop | instructions/req | calibration | failed requests |"
    print "|---|--:|--:|--:|--:|--:|"
    for (i = 1; i <= nt; i++) {
        t = order[i]
        printf "| %s | %.0f | %.0f | %.1f k | %s | %d |\n", label(t), idle[t], full[t], per[t] / 1000, calib(t), fail[t]
    }
    if ("spillway" in per) {
        print ""
        print "| ratio | instructions/req (lower is better) |"
        print "|---|--:|"
        for (i = 1; i <= nt; i++) {
            t = order[i]
            if (t != "spillway" && per[t] > 0)
                printf "| Spillway / %s | %.2f× |\n", label(t), per["spillway"] / per[t]
        }
    } else {
        print ""
        print "_Spillway was not measured in this run: no ratios._"
    }
}
