package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// burrowCluster is the name Burrow's configuration gives the Kafka cluster;
// it is part of every Burrow API path (/v3/kafka/<cluster>/...).
const burrowCluster = "local"

// startBurrow runs Debian's Burrow (1.2) against the environment's Kafka
// broker and ZooKeeper.
//
// Burrow learns high-water marks from the broker (its "kafka" cluster
// module speaks the Kafka protocol, which kfake serves) and committed
// offsets from ZooKeeper (its "kafka_zk" consumer module, the offsets
// ZooKeeper-based consumers commit under /consumers). Its "kafka" consumer
// module would read __consumer_offsets instead, a topic kfake does not have:
// kfake keeps group offsets in memory, so that module fails to start.
// Tests commit with CommitZooKeeperOffsets.
func (e *Env) startBurrow(ctx context.Context) error {
	bin, err := lookSystem("Burrow")
	if err != nil {
		return err
	}
	if e.ZooKeeperAddr == "" || len(e.KafkaAddrs) == 0 {
		return errors.New("burrow needs zookeeper and kafka started first")
	}
	// kafka_zk lists groups under /consumers once at start and watches it
	// from then on; a missing node makes it give up for good.
	if err := e.zkCreate(ctx, "/consumers"); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(e.Dir, "burrow")
	if err := writeBurrowConfig(dir, port, e.ZooKeeperAddr, e.KafkaAddrs); err != nil {
		return err
	}
	p, err := e.start("burrow", bin, []string{"-config-dir", dir}, nil)
	if err != nil {
		return err
	}
	e.BurrowURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	e.BurrowCluster = burrowCluster
	return p.waitFor(ctx, "serving its HTTP API", e.BurrowReady())
}

// BurrowReady is a readiness check for RestartComponent("burrow", ...):
// Burrow's API lists the configured cluster.
func (e *Env) BurrowReady() func(context.Context) error {
	return httpOK(http.DefaultClient, e.BurrowURL+"/v3/kafka/"+burrowCluster, "")
}

func (e *Env) zkCreate(ctx context.Context, path string) error {
	conn, err := e.zkConnect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return zkEnsure(conn, path)
}

// writeBurrowConfig writes burrow.toml: refresh intervals of a second (the
// defaults are tens of seconds) and an evaluation cache of a second, so lag
// changes show within a few seconds; logs go to stdout (the component log).
func writeBurrowConfig(dir string, port int, zkAddr string, kafka []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("burrow dir: %w", err)
	}
	brokers := `"` + strings.Join(kafka, `", "`) + `"`
	conf := fmt.Sprintf(`[general]
pidfile = %[1]q

[logging]
level = "info"

[zookeeper]
servers = [%[2]q]
timeout = 6
root-path = "/burrow"

[client-profile.testenv]
client-id = "burrow-testenv"
kafka-version = "2.0.0"

[cluster.%[3]s]
class-name = "kafka"
servers = [%[4]s]
client-profile = "testenv"
topic-refresh = 1
offset-refresh = 1

[consumer.zookeeper-offsets]
class-name = "kafka_zk"
cluster = %[3]q
servers = [%[2]q]
zookeeper-timeout = 6

[httpserver.default]
address = "127.0.0.1:%[5]d"

[storage.default]
class-name = "inmemory"
workers = 2
intervals = 10
min-distance = 1

[evaluator.default]
class-name = "caching"
expire-cache = 1
`, filepath.Join(dir, "burrow.pid"), zkAddr, burrowCluster, brokers, port)
	if err := os.WriteFile(filepath.Join(dir, "burrow.toml"), []byte(conf), 0o600); err != nil {
		return fmt.Errorf("burrow.toml: %w", err)
	}
	return nil
}
