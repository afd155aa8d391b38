#!/bin/sh
# make fuzz: run every Go fuzz target for FUZZTIME (default 30s) each, one
# after another, and print a table of the executions and new inputs; any
# failure stops with the failing input saved under the package's
# testdata/fuzz (commit it: go test then runs it as a regression test).
# With FUZZSAVE=N, up to N of the inputs the fuzzer found interesting are
# copied into testdata/fuzz as seeds (the repo's corpus grows that way).
set -eu
FUZZTIME=${FUZZTIME:-30s}
FUZZSAVE=${FUZZSAVE:-0}
GO=${GO:-go}
OUT=${FUZZOUT:-bin/fuzz.md}
TARGETS="
./core FuzzParse qubes.xml loader
./core/xmltree FuzzParse XML tree reader under qubes.xml
./core/firewall FuzzParse firewall.xml loader
./core/firewall FuzzParseAPIString firewall rule string (qubesd API form)
./core/firewall FuzzParseArgs CLI rule parser (qvm firewall add)
./backup FuzzParseHeader backup header parser
./backup FuzzHeaderRoundTrip backup header round trip and filter whitelist
./backup FuzzScryptContainer scrypt container reader
./backup FuzzScryptOpen scrypt container sizes
./backup FuzzOuterTar outer tar reader
./backup FuzzOuterTarRegular outer tar: regular members only
./backup FuzzInnerTar inner tar and PAX sparse reader
./backup FuzzOpenArchive whole archive (open and extract)
./backup FuzzExtractTree dom0 home tree extraction (stays below its root)
./memd FuzzRequest qmemman socket request parser
./memd FuzzDomRequest qmemman per-domain request parser and balloon sizes
./memd FuzzAlgoInput qmemmand algo --input JSON
"
mkdir -p "$(dirname "$OUT")"
cache=$($GO env GOCACHE)/fuzz/$($GO list -m)
{
  echo "| target | what | time | executions | new interesting | failures |"
  echo "|---|---|---|---|---|---|"
} > "$OUT"
total=0
echo "$TARGETS" | while read -r pkg name what; do
  [ -n "$pkg" ] || continue
  log=$(mktemp)
  if ! $GO test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -parallel 2 "$pkg" >"$log" 2>&1; then
    cat "$log"
    echo "| $pkg $name | $what | $FUZZTIME | | | 1 |" >> "$OUT"
    echo "fuzz: $pkg $name FAILED (input saved under $pkg/testdata/fuzz/$name)" >&2
    exit 1
  fi
  line=$(grep 'execs:' "$log" | tail -1)
  execs=$(echo "$line" | sed -n 's/.*execs: \([0-9]*\).*/\1/p')
  new=$(echo "$line" | sed -n 's/.*new interesting: \([0-9]*\).*/\1/p')
  echo "| \`$name\` ($pkg) | $what | $FUZZTIME | $execs | ${new:-0} | 0 |" >> "$OUT"
  echo "fuzz: $pkg $name: $execs executions, ${new:-0} new interesting inputs, 0 failures"
  if [ "$FUZZSAVE" -gt 0 ]; then
    src="$cache/${pkg#./}/$name"
    [ "$pkg" = ./core ] && src="$cache/core/$name"
    dst="${pkg#./}/testdata/fuzz/$name"
    if [ -d "$src" ]; then
      mkdir -p "$dst"
      ls -t "$src" | head -n "$FUZZSAVE" | while read -r f; do
        # Seeds must run fast in go test: keep small inputs only.
        [ "$(wc -c < "$src/$f")" -le 4096 ] && cp "$src/$f" "$dst/$f"
      done
    fi
  fi
  rm -f "$log"
done
echo "fuzz: results in $OUT"
cat "$OUT"
