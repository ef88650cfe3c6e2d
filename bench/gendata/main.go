// Command gendata writes the deterministic pcap-like benchmark dataset:
// gendata DIR SIZE (e.g. gendata /tmp/ds 1GiB), or N small JSON event
// files: gendata -events DIR N (e.g. gendata -events /tmp/ev 50000), or
// the dataset spread over N node folders of equal size: gendata -nodes N
// DIR SIZE (e.g. gendata -nodes 30 /tmp/ds 1GiB).
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "-events" {
		n, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ds, err := testenv.GenerateEvents(os.Args[2], n)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%d files, %d bytes in %s\n", ds.Files, ds.Bytes, os.Args[2])
		return
	}
	args, nodes := os.Args[1:], 0
	if len(args) == 4 && args[0] == "-nodes" {
		n, err := strconv.Atoi(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		args, nodes = args[2:], n
	}
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gendata [-nodes N] DIR SIZE | gendata -events DIR N")
		os.Exit(2)
	}
	size, err := setting.ParseSize(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var ds testenv.Dataset
	if nodes > 0 {
		ds, err = testenv.GenerateNodeDataset(args[0], int64(size), nodes)
	} else {
		ds, err = testenv.GenerateDataset(args[0], int64(size))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d files, %d bytes in %s\n", ds.Files, ds.Bytes, args[0])
}
