# `make bench`: the guard against the manual bpftool/tc procedure and the kernel's own cost, on
# sandbox nodes with 100 and 1,000 Calico interfaces (tc and tcx). Needs root; writes
# bench/results.md. Included from the top-level Makefile. BENCH_ARGS passes options through,
# e.g. `make bench BENCH_ARGS="--sizes 100 --variants tc"`.
.PHONY: bench
bench:
	scripts/bench.sh $(BENCH_ARGS)
