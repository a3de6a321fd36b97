package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// startPrometheus runs Debian's Prometheus server on loopback, scraping
// targets (host:port, path /metrics) every second into a TSDB under the env
// dir.
func (e *Env) startPrometheus(ctx context.Context, targets []string) error {
	bin, err := lookSystem("prometheus")
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(e.Dir, "prometheus")
	cfg, err := writePrometheusConfig(dir, targets)
	if err != nil {
		return err
	}
	p, err := e.start("prometheus", bin, []string{
		"--config.file=" + cfg,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--storage.tsdb.retention.time=1h",
	}, nil)
	if err != nil {
		return err
	}
	e.PrometheusURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	return p.waitFor(ctx, "ready", e.PrometheusReady())
}

// PrometheusReady is a readiness check for RestartComponent("prometheus",
// ...): /-/ready answers 200 once the TSDB is open and queries are served.
func (e *Env) PrometheusReady() func(context.Context) error {
	return httpOK(http.DefaultClient, e.PrometheusURL+"/-/ready", "")
}

// writePrometheusConfig writes a one-job configuration. A one-second scrape
// interval (the default is a minute) lets a test see a gauge change within
// a couple of seconds.
func writePrometheusConfig(dir string, targets []string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("prometheus dir: %w", err)
	}
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: testenv
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("prometheus.yml: %w", err)
	}
	return path, nil
}
