#!/usr/bin/env bash
# make test: everything CI runs, stage by stage. Each stage says what it
# runs before it starts; go test's results stream through scripts/testsum
# (a line per package, the output of each failure as it happens), and the
# run ends with one line, "N passed, N failed, N skipped", listing what
# failed. A failed stage does not stop the later ones; the run fails at
# the end.
#
# Expects the test servers installed (make tools) and, from the Makefile:
# GO, TOOLS, TESTSUM (the built scripts/testsum), FUZZTIME, FUZZ_TARGETS,
# KUBE_BIN_DIR (the built control plane).
set -uo pipefail
cd "$(dirname "$0")/.."

go=${GO:-go}
tools=${TOOLS:-$PWD/.tools}
testsum=${TESTSUM:?built by make test}
results=$tools/test-results.txt
start=$(date +%s)
: >"$results"

stage_start=0
stage() {
	echo
	echo "==> [$1/6] $2"
	stage_start=$SECONDS
}
stage_done() { echo "<== $1 done in $((SECONDS - stage_start))s"; }

# check records one named check: its command's output is shown only when
# it fails. go vet on a cold cache compiles for a minute or more, so the
# check is named before it starts.
check() {
	local name=$1 out
	shift
	echo "...  $name"
	if out=$("$@" 2>&1); then
		"$testsum" -record "$results" -result pass -kind check -name "$name"
		echo "ok   $name"
	else
		"$testsum" -record "$results" -result fail -kind check -name "$name"
		echo "FAIL $name"
		[[ -n $out ]] && sed 's/^/     /' <<<"$out"
	fi
}

gofmt_clean() {
	local out
	out=$(gofmt -l "$@") || return 1
	[[ -z $out ]] || { echo "gofmt needed:"; echo "$out"; return 1; }
}

# gotest runs go test -json in the current directory and records each test.
gotest() {
	"$go" test -json "$@" 2>&1 | "$testsum" -record "$results"
	local codes=("${PIPESTATUS[@]}")
	if ((codes[0] != 0 && codes[1] == 0)); then
		# go test failed without a failing test (a vet or setup error).
		"$testsum" -record "$results" -result fail -kind check -name "go test $* (exit ${codes[0]})"
	fi
}

stage 2 "lint: gofmt and go vet"
check "gofmt" gofmt_clean cmd internal bench scripts
check "go vet ./..." "$go" vet ./...
stage_done lint

stage 3 "chart tests (test/chart, its own module): helm lint, strict rendering, Dockerfile lint, pod contract, end to end"
check "gofmt test/chart" gofmt_clean test/chart
(
	cd test/chart || exit
	check "go vet (test/chart)" "$go" vet ./...
	# shellcheck disable=SC2046 # package paths
	gotest -count=1 -timeout 20m $("$go" list ./... | grep -v '/test/chart/kube$')
)
stage_done "chart tests"

stage 4 "the chart on a Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager on 127.0.0.1, a node stand-in running the binary): helm install, CronJobs, Jobs, every exit code"
(
	cd test/chart || exit
	KUBE_BIN_DIR=${KUBE_BIN_DIR:?} ETCD=$(command -v etcd) gotest -count=1 -timeout 30m ./kube/...
)
stage_done "control plane"

stage 5 "go test ./...: unit tests, the store conformance suites against versitygw, Azurite and fake-gcs-server, the binary's tests"
gotest -count=1 -timeout 30m ./...
stage_done "go test"

# shellcheck disable=SC2086 # a list of package:Function words
set -- ${FUZZ_TARGETS:-}
stage 6 "fuzz: $# targets, ${FUZZTIME:-5s} each"
GO=$go FUZZTIME=${FUZZTIME:-5s} FUZZ_LOGS=$tools TEST_RESULTS=$results TESTSUM=$testsum ./scripts/fuzz.sh "$@"
stage_done fuzz

"$testsum" -summary "$results" -start "$start"
