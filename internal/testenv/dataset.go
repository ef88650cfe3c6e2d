package testenv

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Dataset describes a generated snapshot volume.
type Dataset struct {
	Files int
	Bytes int64
}

// GenerateDataset writes a deterministic, pcap-like snapshot volume of
// about size bytes into dir: per-node folders of pcap files whose packets
// carry a mix of HTTP/JSON text (compressible) and TLS-like random
// payloads (not), plus a few thousand small JSON event files. The same
// size always gives the same bytes, so benchmarks compare like with like.
func GenerateDataset(dir string, size int64) (Dataset, error) {
	return generate(dir, size, 4, "node-%d", func(int64) int64 { return 64 << 20 })
}

// GenerateNodeDataset writes the same kind of volume as GenerateDataset
// spread over nodes folders (node-00, node-01, …) that each hold the same
// number of equal pcap files (at most 64 MiB each), so that one node
// folder is about 1/nodes of the volume: what a restore of one node's
// captures selects.
func GenerateNodeDataset(dir string, size int64, nodes int) (Dataset, error) {
	if nodes < 1 || nodes > 100 {
		return Dataset{}, fmt.Errorf("%d node folders: between 1 and 100", nodes)
	}
	return generate(dir, size, nodes, "node-%02d", func(left int64) int64 {
		const most = 64 << 20
		per := (left + int64(nodes)*most - 1) / (int64(nodes) * most) // pcaps per node
		return max(1, (left+int64(nodes)*per-1)/(int64(nodes)*per))
	})
}

// generate writes the small JSON files, then pcaps of pcapSize(bytes
// still to write) bytes each, round-robin over the node folders.
func generate(dir string, size int64, nodes int, nodeFmt string, pcapSize func(left int64) int64) (Dataset, error) {
	var ds Dataset
	rng := rand.New(rand.NewPCG(uint64(size), 42))
	jsonFiles := 3000
	jsonBytes := int64(0)
	// Small JSON files: about 2% of the volume, at least a few thousand.
	for i := range jsonFiles {
		node := fmt.Sprintf(nodeFmt, i%nodes)
		p := filepath.Join(dir, node, "events", fmt.Sprintf("event-%05d.json", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return ds, err
		}
		body := eventJSON(rng, i)
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return ds, err
		}
		jsonBytes += int64(len(body))
		ds.Files++
	}
	ds.Bytes = jsonBytes
	left := size - jsonBytes
	pcap := pcapSize(left)
	for i := 0; left > 0; i++ {
		n := min(pcap, left)
		p := filepath.Join(dir, fmt.Sprintf(nodeFmt, i%nodes), "pcap", fmt.Sprintf("capture-%04d.pcap", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return ds, err
		}
		if err := writePcap(p, n, rng); err != nil {
			return ds, err
		}
		ds.Files++
		ds.Bytes += n
		left -= n
	}
	return ds, nil
}

// GenerateEvents writes n small JSON event files of 2–14 KiB into dir,
// deterministic for a given n: per-node folders of 500 files each, the
// shape where a backup waits on the disk once per file and read-ahead
// matters most.
func GenerateEvents(dir string, n int) (Dataset, error) {
	var ds Dataset
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	const nodes, perDir = 4, 500
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("node-%d", i%nodes), fmt.Sprintf("events-%03d", i/(nodes*perDir)), fmt.Sprintf("event-%06d.json", i))
		if i%(nodes*perDir) < nodes { // the first file of each folder
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return ds, err
			}
		}
		want := 2<<10 + rng.IntN(12<<10)
		var body []byte
		for j := 0; len(body) < want; j++ {
			body = append(body, eventJSON(rng, i*100+j)...)
		}
		if err := os.WriteFile(p, body[:want], 0o644); err != nil {
			return ds, err
		}
		ds.Files++
		ds.Bytes += int64(want)
	}
	return ds, nil
}

var (
	methods = []string{"GET", "POST", "PUT", "DELETE"}
	paths   = []string{"/api/v1/orders", "/api/v1/users/", "/healthz", "/metrics", "/api/v2/cart/items", "/login"}
	agents  = []string{"Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Go-http-client/1.1", "python-requests/2.31"}
)

func eventJSON(rng *rand.Rand, i int) []byte {
	return fmt.Appendf(nil, `{"id":%d,"ts":"2026-11-26T03:%02d:%02d.%06dZ","src":{"ip":"10.%d.%d.%d","port":%d},"dst":{"ip":"172.16.%d.%d","port":443},"proto":"tcp","l7":"http","method":%q,"path":%q,"status":%d,"bytes":%d,"latency_ms":%.3f,"ua":%q}`+"\n",
		i, rng.IntN(60), rng.IntN(60), rng.IntN(1e6), rng.IntN(256), rng.IntN(256), rng.IntN(256), 1024+rng.IntN(60000),
		rng.IntN(256), rng.IntN(256), methods[rng.IntN(len(methods))], paths[rng.IntN(len(paths))], []int{200, 201, 204, 404, 500}[rng.IntN(5)],
		rng.IntN(100000), rng.Float64()*250, agents[rng.IntN(len(agents))])
}

// writePcap writes a libpcap file of exactly n bytes.
func writePcap(path string, n int64, rng *rand.Rand) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // Ethernet
	w.Write(hdr)
	written := int64(len(hdr))
	ts := uint32(1795660000)
	var pkt []byte
	random := make([]byte, 1500)
	for written < n {
		pkt = pkt[:0]
		pkt = append(pkt, frameHeader(rng)...)
		if rng.IntN(10) < 4 { // HTTP with a JSON body
			body := eventJSON(rng, rng.IntN(1e6))
			pkt = fmt.Appendf(pkt, "%s %s HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				methods[rng.IntN(len(methods))], paths[rng.IntN(len(paths))], agents[rng.IntN(len(agents))], len(body), body)
		} else { // TLS application data: random
			m := 200 + rng.IntN(1200)
			for i := 0; i < m; i += 8 {
				binary.LittleEndian.PutUint64(random[i:], rng.Uint64())
			}
			pkt = append(pkt, 0x17, 0x03, 0x03, byte(m>>8), byte(m))
			pkt = append(pkt, random[:m]...)
		}
		rec := make([]byte, 16)
		ts += uint32(rng.IntN(3))
		binary.LittleEndian.PutUint32(rec[0:], ts)
		binary.LittleEndian.PutUint32(rec[4:], uint32(rng.IntN(1e6)))
		size := min(int64(len(pkt)), n-written-16)
		if size < 0 {
			size = 0
		}
		binary.LittleEndian.PutUint32(rec[8:], uint32(size))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(pkt)))
		rem := n - written
		if rem < 16 {
			w.Write(make([]byte, rem))
			written += rem
			break
		}
		w.Write(rec)
		w.Write(pkt[:size])
		written += 16 + size
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func frameHeader(rng *rand.Rand) []byte {
	h := make([]byte, 54)
	copy(h, []byte{0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0x02, 0x42, 0xac, 0x11, 0x00, 0x03, 0x08, 0x00})
	h[14] = 0x45
	h[23] = 6
	h[26], h[27], h[28], h[29] = 10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))
	h[30], h[31], h[32], h[33] = 172, 16, byte(rng.IntN(256)), byte(rng.IntN(256))
	binary.BigEndian.PutUint16(h[34:], uint16(1024+rng.IntN(60000)))
	binary.BigEndian.PutUint16(h[36:], 443)
	return h
}
