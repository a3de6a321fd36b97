package procnode

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The process node serves kubelet's resource-metrics endpoint
// (GET /metrics/resource, Prometheus text as kubelet >= 1.20 serves it) over
// HTTPS on a free loopback port published as the node's kubelet port, so a
// real metrics-server can scrape the CPU and memory of the pods' processes.
//
// A container's usage is that of its process group: CPU is the sum over the
// group's threads of /proc/<pid>/task/<tid>/schedstat run time (nanoseconds;
// /proc/<pid>/stat utime+stime at CLK_TCK=100 when schedstat is missing) plus
// the reaped children's cutime+cstime; memory is the sum of VmRSS. The CPU
// counter is kept monotonic per container, as metrics-server rejects a
// decrease (a process of the group exiting unreaped by its parent).

const clkTck = 100 // USER_HZ on Linux

// metricsServer is the HTTPS endpoint; Port is what the node status publishes.
type metricsServer struct {
	srv  *http.Server
	port int
}

// startMetrics listens on 127.0.0.1:0 with a fresh self-signed certificate.
func (n *Node) startMetrics() error {
	cert, err := selfSignedCert(n.name)
	if err != nil {
		return err
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return fmt.Errorf("process node metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics/resource", n.serveResourceMetrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.metrics = &metricsServer{srv: srv, port: l.Addr().(*net.TCPAddr).Port}
	go func() { _ = srv.Serve(l) }()
	return nil
}

// MetricsPort is the HTTPS port of /metrics/resource (0 when not serving).
func (n *Node) MetricsPort() int {
	if n.metrics == nil {
		return 0
	}
	return n.metrics.port
}

func (n *Node) stopMetrics() {
	if n.metrics == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = n.metrics.srv.Shutdown(ctx)
}

func (n *Node) serveResourceMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(n.resourceMetrics(time.Now()))
}

// containerSample is one running container's usage.
type containerSample struct {
	namespace, pod, container string
	cpuSeconds                float64
	memBytes                  uint64
	started                   time.Time
}

// resourceMetrics renders the node's and its running containers' usage.
func (n *Node) resourceMetrics(now time.Time) []byte {
	groups := processGroups()
	var samples []containerSample
	n.mu.Lock()
	runners := make([]*podRunner, 0, len(n.pods))
	for _, r := range n.pods {
		runners = append(runners, r)
	}
	n.mu.Unlock()
	for _, r := range runners {
		r.mu.Lock()
		for _, c := range r.containers {
			if c.proc == nil || c.state.Running == nil {
				continue
			}
			cpuNs, mem := groupUsage(groups[c.proc.Pid()])
			// Keep the counter monotonic, and above zero: metrics-server
			// drops a container whose cumulative CPU is 0.
			if cpuNs < c.lastCPUNs {
				cpuNs = c.lastCPUNs
			}
			cpuNs = max(cpuNs, 1)
			c.lastCPUNs = cpuNs
			samples = append(samples, containerSample{
				namespace: r.pod.Namespace, pod: r.pod.Name, container: c.name,
				cpuSeconds: float64(cpuNs) / 1e9, memBytes: mem, started: c.state.Running.StartedAt.Time,
			})
		}
		r.mu.Unlock()
	}
	sort.Slice(samples, func(i, j int) bool {
		a, b := samples[i], samples[j]
		return a.namespace+"/"+a.pod+"/"+a.container < b.namespace+"/"+b.pod+"/"+b.container
	})
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	var b bytes.Buffer
	nodeCPU, nodeMem := nodeUsage()
	family := func(name, help, typ string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	labels := func(s containerSample, withContainer bool) string {
		if withContainer {
			return fmt.Sprintf(`{container=%q,namespace=%q,pod=%q}`, s.container, s.namespace, s.pod)
		}
		return fmt.Sprintf(`{namespace=%q,pod=%q}`, s.namespace, s.pod)
	}
	family("container_cpu_usage_seconds_total", "[ALPHA] Cumulative cpu time consumed by the container in core-seconds", "counter")
	for _, s := range samples {
		fmt.Fprintf(&b, "container_cpu_usage_seconds_total%s %s %s\n", labels(s, true), fmtFloat(s.cpuSeconds), ts)
	}
	family("container_memory_working_set_bytes", "[ALPHA] Current working set of the container in bytes", "gauge")
	for _, s := range samples {
		fmt.Fprintf(&b, "container_memory_working_set_bytes%s %d %s\n", labels(s, true), s.memBytes, ts)
	}
	family("container_start_time_seconds", "[ALPHA] Start time of the container since unix epoch in seconds", "gauge")
	for _, s := range samples {
		fmt.Fprintf(&b, "container_start_time_seconds%s %s %s\n", labels(s, true), fmtFloat(float64(s.started.UnixNano())/1e9), ts)
	}
	family("node_cpu_usage_seconds_total", "[ALPHA] Cumulative cpu time consumed by the node in core-seconds", "counter")
	fmt.Fprintf(&b, "node_cpu_usage_seconds_total %s %s\n", fmtFloat(nodeCPU), ts)
	family("node_memory_working_set_bytes", "[ALPHA] Current working set of the node in bytes", "gauge")
	fmt.Fprintf(&b, "node_memory_working_set_bytes %d %s\n", nodeMem, ts)
	pods := map[string]containerSample{}
	var podKeys []string
	for _, s := range samples {
		k := s.namespace + "/" + s.pod
		p, ok := pods[k]
		if !ok {
			podKeys = append(podKeys, k)
			p = containerSample{namespace: s.namespace, pod: s.pod}
		}
		p.cpuSeconds += s.cpuSeconds
		p.memBytes += s.memBytes
		pods[k] = p
	}
	family("pod_cpu_usage_seconds_total", "[ALPHA] Cumulative cpu time consumed by the pod in core-seconds", "counter")
	for _, k := range podKeys {
		fmt.Fprintf(&b, "pod_cpu_usage_seconds_total%s %s %s\n", labels(pods[k], false), fmtFloat(pods[k].cpuSeconds), ts)
	}
	family("pod_memory_working_set_bytes", "[ALPHA] Current working set of the pod in bytes", "gauge")
	for _, k := range podKeys {
		fmt.Fprintf(&b, "pod_memory_working_set_bytes%s %d %s\n", labels(pods[k], false), pods[k].memBytes, ts)
	}
	return b.Bytes()
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// processGroups maps each process group id to the pids in it.
func processGroups() map[int][]int {
	out := map[int][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		out[st.pgrp] = append(out[st.pgrp], pid)
	}
	return out
}

type procStat struct {
	pgrp                         int
	utime, stime, cutime, cstime uint64
}

// readStat parses /proc/<pid>/stat; the command name may contain spaces and
// parentheses, so fields are counted after the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed stat")
	}
	// Fields after ")": state(3) ppid(4) pgrp(5) ... utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procStat{}, errors.New("short stat")
	}
	num := func(k int) uint64 { v, _ := strconv.ParseUint(f[k-3], 10, 64); return v }
	pgrp, _ := strconv.Atoi(f[5-3])
	return procStat{pgrp: pgrp, utime: num(14), stime: num(15), cutime: num(16), cstime: num(17)}, nil
}

// groupUsage sums CPU (nanoseconds) and VmRSS (bytes) over pids.
func groupUsage(pids []int) (cpuNs, rss uint64) {
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		run, ok := schedRunNs(pid)
		if !ok {
			run = (st.utime + st.stime) * (1e9 / clkTck)
		}
		cpuNs += run + (st.cutime+st.cstime)*(1e9/clkTck)
		rss += vmRSS(pid)
	}
	return cpuNs, rss
}

// schedRunNs sums the on-CPU time of every thread of pid from schedstat.
func schedRunNs(pid int) (uint64, bool) {
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return 0, false
	}
	var total uint64
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", t.Name(), "schedstat"))
		if errors.Is(err, os.ErrNotExist) && !schedstatExists() {
			return 0, false
		}
		if err != nil {
			continue // thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, false
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		total += v
	}
	return total, true
}

// schedstatExists reports whether the kernel has schedstat at all.
func schedstatExists() bool {
	_, err := os.Stat("/proc/self/schedstat")
	return err == nil
}

// vmRSS reads VmRSS from /proc/<pid>/status in bytes (0 for zombies).
func vmRSS(pid int) uint64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// nodeUsage is the machine's cumulative CPU (seconds, all but idle and
// iowait from /proc/stat) and working set (MemTotal - MemAvailable).
func nodeUsage() (cpuSeconds float64, memBytes uint64) {
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		var busy uint64
		for i, v := range f[1:] {
			if i == 3 || i == 4 { // idle, iowait
				continue
			}
			if i >= 8 { // guest, guest_nice are already in user, nice
				break
			}
			x, _ := strconv.ParseUint(v, 10, 64)
			busy += x
		}
		cpuSeconds = float64(busy) / clkTck
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var total, avail uint64
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			v, _ := strconv.ParseUint(f[1], 10, 64)
			switch f[0] {
			case "MemTotal:":
				total = v * 1024
			case "MemAvailable:":
				avail = v * 1024
			}
		}
		if total > avail {
			memBytes = total - avail
		}
	}
	return cpuSeconds, memBytes
}

// selfSignedCert makes a throw-away serving certificate for 127.0.0.1;
// metrics-server scrapes it with --kubelet-insecure-tls (test env only).
func selfSignedCert(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("metrics key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", name},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign metrics cert: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
