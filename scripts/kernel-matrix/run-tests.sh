#!/usr/bin/env bash
# The arm64 guests' test runner, in place of cargo-nextest (there is no aarch64 build of it
# here; see scripts/kernel-matrix/arm64.sh). It keeps what the matrix relies on nextest for:
# every test in a process of its own (`BINARY --exact NAME`), started from its package's
# directory, killed after KM_TEST_TIMEOUT and counted as timed out, KM_JOBS at a time. It writes nextest's result lines (PASS/FAIL/TIMEOUT/SIGxxx [ time] binary test),
# every failed test's output, then nextest's Summary line and the failures again, so that
# kernel-matrix.sh reads its log as it reads nextest's, and a JUnit file.
#
# TESTS/tests.tsv (written by the build host from nextest's own list of the archive, so the
# filterset and ignored tests are nextest's): one test a line, tab-separated: binary id, binary
# path, working directory, test name, and 1 if it runs here (0: filtered out or ignored,
# counted as skipped).
# Usage: run-tests.sh TESTS SCRATCH JUNIT
# Exit:  0 when every test that ran passed, 100 otherwise (as nextest).
set -uo pipefail
tests=$1 scratch=$2 junit=$3
jobs=${KM_JOBS:-$(nproc)}
limit=${KM_TEST_TIMEOUT:-180}

work=$scratch/run-tests
rm -rf "$work"
mkdir -p "$work/out"
results=$work/results
: >"$results"
start=$EPOCHREALTIME

# elapsed FROM: seconds since FROM ($EPOCHREALTIME), to the millisecond, in bash alone: every
# process started under TCG costs a noticeable fraction of a second.
elapsed() {
    local ms=$(((${EPOCHREALTIME/./} - ${1/./}) / 1000))
    printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

# one ID BINARY DIR TEST N: run one test; print its result line and append "STATUS TIME ID TEST
# N" to the results.
one() {
    local id=$1 bin=$2 dir=$3 test=$4 n=$5 t0 rc=0 status secs
    t0=$EPOCHREALTIME
    (cd "$dir" && exec timeout -k 10s "${limit}s" "$bin" --exact "$test" --nocapture --test-threads=1) \
        </dev/null >"$work/out/$n" 2>&1 || rc=$?
    secs=$(elapsed "$t0")
    case $rc in
    0) status=PASS ;;
    124 | 137) status=TIMEOUT ;;
    *)
        status=FAIL
        [ "$rc" -gt 128 ] && status=SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))
        ;;
    esac
    printf '%12s [%8ss] %s %s\n' "$status" "$secs" "$id" "$test"
    echo "$status $secs $id $test $n" >>"$results"
}

total=0
n=0
running=0
while IFS=$'\t' read -r id bin dir test run; do
    total=$((total + 1))
    [ "$run" = 1 ] || continue
    n=$((n + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    one "$id" "$bin" "$dir" "$test" "$n" &
    running=$((running + 1))
done <"$tests/tests.tsv"
wait

run=$(grep -c . "$results")
passed=$(grep -c '^PASS ' "$results")
timedout=$(grep -c '^TIMEOUT ' "$results")
failed=$((run - passed - timedout))
skipped=$((total - run))
[ "$skipped" -ge 0 ] || skipped=0

# The output of every test that did not pass, one after another.
while read -r status secs id test k; do
    [ "$status" = PASS ] && continue
    echo "--- $status: $id $test (${secs}s) ---"
    cat "$work/out/$k" 2>/dev/null
done <"$results"

summary="$run tests run: $passed passed"
[ "$failed" = 0 ] || summary+=", $failed failed"
[ "$timedout" = 0 ] || summary+=", $timedout timed out"
summary+=", $skipped skipped"
printf '%12s [%8ss] %s\n' Summary "$(elapsed "$start")" "$summary"
grep -v '^PASS ' "$results" | while read -r status secs id test _; do
    printf '%12s [%8ss] %s %s\n' "$status" "$secs" "$id" "$test"
done

# JUnit, one testsuite per binary, written by one awk (a process per test would cost minutes).
sort -k3,3 -s "$results" | awk -v run="$run" -v failures="$((failed + timedout))" '
    function xml(s) {
        gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); gsub(/"/, "\\&quot;", s)
        return s
    }
    BEGIN {
        print "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        printf "<testsuites name=\"kernel-matrix\" tests=\"%d\" failures=\"%d\">\n", run, failures
    }
    $3 != id {
        if (id != "") print "  </testsuite>"
        id = $3
        printf "  <testsuite name=\"%s\">\n", xml(id)
    }
    {
        printf "    <testcase classname=\"%s\" name=\"%s\" time=\"%s\">", xml($3), xml($4), $2
        if ($1 != "PASS") printf "<failure type=\"%s\"/>", $1
        print "</testcase>"
    }
    END {
        if (id != "") print "  </testsuite>"
        print "</testsuites>"
    }' >"$junit"

[ "$run" -gt 0 ] && [ "$passed" = "$run" ] || exit 100
