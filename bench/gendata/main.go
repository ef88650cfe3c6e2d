// Command gendata writes the deterministic pcap-like benchmark dataset:
// gendata DIR SIZE (e.g. gendata /tmp/ds 1GiB), or N small JSON event
// files: gendata -events DIR N (e.g. gendata -events /tmp/ev 50000).
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
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gendata DIR SIZE | gendata -events DIR N")
		os.Exit(2)
	}
	size, err := setting.ParseSize(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ds, err := testenv.GenerateDataset(os.Args[1], int64(size))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d files, %d bytes in %s\n", ds.Files, ds.Bytes, os.Args[1])
}
