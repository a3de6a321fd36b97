package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// Debian's zookeeper package: the server jar (its manifest names the jars it
// needs) and an SLF4J binding that sends the server's log to stderr, which
// the component log captures (without one SLF4J drops every line).
const (
	zooKeeperJar   = "/usr/share/java/zookeeper.jar"
	slf4jSimpleJar = "/usr/share/java/slf4j-simple.jar"
)

// startZooKeeper runs a standalone ZooKeeper on a loopback port with its data
// under the env dir, its admin HTTP server off, and only the "ruok"
// four-letter command allowed (the readiness check).
func (e *Env) startZooKeeper(ctx context.Context) error {
	java, err := lookSystem("java")
	if err != nil {
		return err
	}
	if _, err := os.Stat(zooKeeperJar); err != nil {
		return fmt.Errorf("%s not found: hack/install-deps.sh installs zookeeperd: %w", zooKeeperJar, err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(e.Dir, "zookeeper")
	cfg, err := writeZooKeeperConfig(dir, port)
	if err != nil {
		return err
	}
	classpath := zooKeeperJar
	if _, err := os.Stat(slf4jSimpleJar); err == nil {
		classpath += ":" + slf4jSimpleJar
	}
	p, err := e.start("zookeeper", java, []string{
		// A small heap and the client compiler: a test ZooKeeper holds a
		// few nodes, and starts about twice as fast this way.
		"-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-cp", classpath, "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg,
	}, nil)
	if err != nil {
		return err
	}
	e.ZooKeeperAddr = fmt.Sprintf("127.0.0.1:%d", port)
	return p.waitFor(ctx, "serving", e.ZooKeeperReady())
}

func writeZooKeeperConfig(dir string, port int) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return "", fmt.Errorf("zookeeper dir: %w", err)
	}
	conf := strings.Join([]string{
		"tickTime=500",
		"dataDir=" + filepath.Join(dir, "data"),
		"clientPort=" + strconv.Itoa(port),
		"clientPortAddress=127.0.0.1",
		"admin.enableServer=false",
		"4lw.commands.whitelist=ruok",
		"",
	}, "\n")
	path := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("zoo.cfg: %w", err)
	}
	return path, nil
}

// ZooKeeperReady is a readiness check for RestartComponent("zookeeper", ...):
// ZooKeeper answers "imok" to "ruok" once it serves clients.
func (e *Env) ZooKeeperReady() func(context.Context) error {
	addr := e.ZooKeeperAddr
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("ruok")); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(b) != "imok" {
			return fmt.Errorf("zookeeper answered %q to ruok", b)
		}
		return nil
	}
}

// zkConnect opens a session and waits until it is established, so the first
// request does not race the handshake.
func (e *Env) zkConnect(ctx context.Context) (*zk.Conn, error) {
	if e.ZooKeeperAddr == "" {
		return nil, errors.New("zookeeper is not running in this environment")
	}
	conn, events, err := zk.Connect([]string{e.ZooKeeperAddr}, 10*time.Second,
		zk.WithLogger(log.New(io.Discard, "", 0)), zk.WithLogInfo(false))
	if err != nil {
		return nil, fmt.Errorf("connect to zookeeper: %w", err)
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil, errors.New("zookeeper connection closed before a session was established")
			}
			if ev.State == zk.StateHasSession {
				return conn, nil
			}
		case <-ctx.Done():
			conn.Close()
			return nil, fmt.Errorf("zookeeper session: %w", ctx.Err())
		}
	}
}

// zkEnsure creates path and its missing parents (empty nodes).
func zkEnsure(conn *zk.Conn, path string) error {
	cur := ""
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		cur += "/" + part
		if _, err := conn.Create(cur, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create zookeeper node %s: %w", cur, err)
		}
	}
	return nil
}

// CommitZooKeeperOffsets commits a consumer group's offsets for one topic
// the way ZooKeeper-based Kafka consumers do: the next offset to read, as a
// decimal string, in /consumers/<group>/offsets/<topic>/<partition>.
// offsets[i] is partition i's offset; give every partition, in order:
// Burrow's kafka_zk module reads partitions 0..n-1 by count.
func (e *Env) CommitZooKeeperOffsets(ctx context.Context, group, topic string, offsets []int64) error {
	conn, err := e.zkConnect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	dir := fmt.Sprintf("/consumers/%s/offsets/%s", group, topic)
	if err := zkEnsure(conn, dir); err != nil {
		return err
	}
	for p, off := range offsets {
		if err := zkSet(conn, fmt.Sprintf("%s/%d", dir, p), []byte(strconv.FormatInt(off, 10))); err != nil {
			return err
		}
	}
	return nil
}

// zkSet creates path with data, or overwrites the data of an existing node.
func zkSet(conn *zk.Conn, path string, data []byte) error {
	_, err := conn.Create(path, data, 0, zk.WorldACL(zk.PermAll))
	if errors.Is(err, zk.ErrNodeExists) {
		_, err = conn.Set(path, data, -1)
	}
	if err != nil {
		return fmt.Errorf("write zookeeper node %s: %w", path, err)
	}
	return nil
}
