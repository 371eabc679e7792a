# `make bench`: the guard against the manual bpftool/tc procedure and the kernel's own cost, on
# sandbox nodes with 100 and 1,000 Calico interfaces (tc and tcx). Needs root; writes
# bench/results.md. Included from the top-level Makefile. BENCH_ARGS passes options through,
# e.g. `make bench BENCH_ARGS="--sizes 100 --variants tc"`.
.PHONY: bench bench-compare
bench:
	scripts/bench.sh $(BENCH_ARGS)

# `make bench-compare REF=<commit>`: the guard built at REF (a git worktree under
# target/bench-ref/) and this tree's, measured in the same runs, taking turns; the table ends
# with the two side by side.
bench-compare:
	@[ -n "$(REF)" ] || { echo "usage: make bench-compare REF=<commit> [BENCH_ARGS=...]" >&2; exit 2; }
	scripts/bench.sh --compare $(REF) $(BENCH_ARGS)
