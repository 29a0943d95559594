# perf script (with call chains) -> folded stacks "comm;root;...;leaf COUNT".
# A tiny stand-in for Brendan Gregg's stackcollapse-perf.pl (not packaged in
# Debian). Frames without a symbol keep their DSO: "[unknown](libc.so.6)".
function flush(   s, i) {
	if (n > 0) {
		s = comm
		for (i = n - 1; i >= 0; i--)
			s = s ";" frame[i]
		count[s]++
	}
	n = 0
}
/^[^ \t]/ { flush(); comm = $1; next }
/^[ \t]+[0-9a-f]+ / {
	line = $0
	sub(/^[ \t]+[0-9a-f]+ /, "", line)
	dso = ""
	if (match(line, / \([^()]*\)$/)) {
		dso = substr(line, RSTART + 2, RLENGTH - 3)
		line = substr(line, 1, RSTART - 1)
	}
	sub(/\+0x[0-9a-f]+$/, "", line)
	if (line == "[unknown]" && dso != "") {
		nd = split(dso, parts, "/")
		line = "[unknown](" parts[nd] ")"
	}
	gsub(/;/, ":", line)
	gsub(/ /, "_", line)
	frame[n++] = line
	next
}
/^[ \t]*$/ { flush() }
END { flush(); for (s in count) print s, count[s] }
