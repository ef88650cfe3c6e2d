// Command gendata writes the deterministic pcap-like benchmark dataset:
// gendata DIR SIZE (e.g. gendata /tmp/ds 1GiB).
package main

import (
	"fmt"
	"os"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gendata DIR SIZE")
		os.Exit(2)
	}
	size, err := config.ParseSize(os.Args[2])
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
