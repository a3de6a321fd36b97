package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// startRedis runs redis-server without persistence. Keyspace notifications
// stay off by default (as in a stock Redis); tests that want push set them
// with CONFIG SET.
func (e *Env) startRedis(ctx context.Context) error {
	bin, err := lookSystem("redis-server")
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(e.Dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("redis dir: %w", err)
	}
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dir", dir, "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--daemonize", "no",
	}
	conf, err := e.auth.redisConfig(dir)
	if err != nil {
		return err
	}
	if conf != "" {
		// A config file must be redis-server's first argument.
		args = append([]string{conf}, args...)
	}
	p, err := e.start("redis", bin, args, nil)
	if err != nil {
		return err
	}
	e.RedisAddr = fmt.Sprintf("127.0.0.1:%d", port)
	return p.waitFor(ctx, "accepting connections", redisPing(e.RedisAddr, e.auth.redisPassword()))
}

// redisPing speaks just enough RESP to see PONG, so readiness needs no
// client; with a password it authenticates first.
func redisPing(addr, password string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		want := "+PONG\r\n"
		if password != "" {
			// RESP array form, so the password needs no quoting.
			auth := fmt.Sprintf("*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password)
			if _, err := c.Write([]byte(auth)); err != nil {
				return err
			}
			want = "+OK\r\n" + want
		}
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		buf := make([]byte, 0, 64)
		for len(buf) < len(want) {
			chunk := make([]byte, 64)
			n, err := c.Read(chunk)
			if err != nil {
				return err
			}
			buf = append(buf, chunk[:n]...)
		}
		if string(buf) != want {
			return errors.New("redis did not answer PONG to PING")
		}
		return nil
	}
}

// startNATS runs nats-server with JetStream storing under the env dir.
func (e *Env) startNATS(ctx context.Context) error {
	bin, err := lookSystem("nats-server")
	if err != nil {
		return err
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	args := []string{
		"-a", "127.0.0.1", "-p", strconv.Itoa(ports[0]),
		"-m", strconv.Itoa(ports[1]),
		"-js", "-sd", filepath.Join(e.Dir, "nats"),
	}
	conf, err := e.auth.natsConfig(e.Dir)
	if err != nil {
		return err
	}
	if conf != "" {
		args = append(args, "-c", conf)
	}
	p, err := e.start("nats", bin, args, nil)
	if err != nil {
		return err
	}
	e.NATSURL = fmt.Sprintf("nats://127.0.0.1:%d", ports[0])
	// /healthz?js-enabled-only answers 200 once JetStream is up.
	health := fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", ports[1])
	return p.waitFor(ctx, "healthy", httpOK(http.DefaultClient, health, ""))
}

// startRabbitMQ runs a RabbitMQ node with its own epmd, node name, cookie and
// data directories, so it neither needs nor touches the system service.
// With management it also serves the management HTTP API on loopback.
func (e *Env) startRabbitMQ(ctx context.Context, management bool) error {
	server, err := lookSystem("rabbitmq-server")
	if err != nil {
		return err
	}
	if _, err := os.Stat("/usr/lib/rabbitmq/bin/rabbitmq-server"); err == nil {
		// Debian's /usr/sbin wrapper switches to the rabbitmq user and
		// redirects logs; the real script runs as whoever calls it.
		server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	}
	epmd, err := lookSystem("epmd")
	if err != nil {
		return err
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	amqpPort, epmdPort, distPort, mgmtPort := ports[0], ports[1], ports[2], ports[3]
	base := filepath.Join(e.Dir, "rabbitmq")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fmt.Errorf("rabbitmq dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(base, ".erlang.cookie"), []byte("swelltestenvcookie"), 0o400); err != nil {
		return fmt.Errorf("erlang cookie: %w", err)
	}
	conf := fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nloopback_users = none\n", amqpPort) + e.auth.rabbitMQConfig()
	plugins := "[].\n"
	if management {
		conf += fmt.Sprintf("management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %d\n", mgmtPort)
		plugins = "[rabbitmq_management].\n"
	}
	if err := os.WriteFile(filepath.Join(base, "rabbitmq.conf"), []byte(conf), 0o600); err != nil {
		return fmt.Errorf("rabbitmq.conf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(base, "enabled_plugins"), []byte(plugins), 0o600); err != nil {
		return fmt.Errorf("enabled_plugins: %w", err)
	}
	erlEnv := []string{"ERL_EPMD_PORT=" + strconv.Itoa(epmdPort), "ERL_EPMD_ADDRESS=127.0.0.1", "HOME=" + base}
	if _, err := e.start("epmd", epmd, []string{"-port", strconv.Itoa(epmdPort), "-address", "127.0.0.1"}, erlEnv); err != nil {
		return err
	}
	node := fmt.Sprintf("swell%d@localhost", amqpPort)
	p, err := e.start("rabbitmq", server, nil, append(erlEnv,
		"RABBITMQ_NODENAME="+node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(amqpPort),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(base, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(base, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(base, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(base, "log"),
		"RABBITMQ_LOGS=-",
		"RABBITMQ_PID_FILE="+filepath.Join(base, "rabbit.pid"),
		// Exec the Erlang VM in place of the wrapper script, so the VM is
		// the supervised process and gets SIGTERM directly, and never let
		// it spawn a detached epmd of its own.
		"RUNNING_UNDER_SYSTEMD=true",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-start_epmd false",
	))
	if err != nil {
		return err
	}
	user, password := e.auth.rabbitMQUser()
	e.RabbitMQURL = (&url.URL{Scheme: "amqp", User: url.UserPassword(user, password), Host: fmt.Sprintf("127.0.0.1:%d", amqpPort), Path: "/"}).String()
	if err := p.waitFor(ctx, "accepting AMQP", func(context.Context) error {
		conn, err := amqp.DialConfig(e.RabbitMQURL, amqp.Config{Dial: amqp.DefaultDial(time.Second)})
		if err != nil {
			return err
		}
		return conn.Close()
	}); err != nil || !management {
		return err
	}
	e.RabbitMQManagementURL = fmt.Sprintf("http://127.0.0.1:%d", mgmtPort)
	return p.waitFor(ctx, "serving management API", httpOK(http.DefaultClient, e.RabbitMQManagementURL+"/", ""))
}

// startKafka runs franz-go's kfake, a Kafka-protocol broker, in this process.
// Like a broker tuned for a test, it notices a dead member of a KIP-848
// consumer group after 6 s instead of Kafka's default 45 s (the classic
// protocol's clients choose their own session timeout), with 1 s
// heartbeats instead of 5 s.
func (e *Env) startKafka(context.Context) error {
	opts := append([]kfake.Opt{kfake.NumBrokers(1), kfake.BrokerConfigs(map[string]string{
		"group.consumer.session.timeout.ms":    "6000",
		"group.consumer.heartbeat.interval.ms": "1000",
	})}, e.auth.kafkaOpts()...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("kfake cluster: %w", err)
	}
	e.kafka = c
	e.KafkaAddrs = c.ListenAddrs()
	return nil
}
