"""Real brokers for the SDK tests: Debian's redis-server and rabbitmq-server,
each started on free loopback ports in a temporary directory and stopped
afterwards. RabbitMQ runs the way internal/testenv runs it: its own epmd,
node name, cookie and data directories, so it neither needs nor touches the
system service."""

import os
import shutil
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find(name, *preferred):
    for path in preferred:
        if os.path.exists(path):
            return path
    path = shutil.which(name) or (os.path.exists("/usr/sbin/" + name) and "/usr/sbin/" + name)
    if not path:
        raise RuntimeError("%s not installed: run hack/install-deps.sh" % name)
    return path


def _wait(what, ready, proc, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s before it was ready" % (what, proc.returncode))
        try:
            ready()
            return
        except Exception as e:  # noqa: BLE001 - not ready yet
            last = e
            time.sleep(0.2)
    raise RuntimeError("%s not ready after %ss: %s" % (what, timeout, last))


class Broker:
    """Processes of one broker; stop() ends them and removes the directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="swell-sdk-test-")
        self.procs = []
        self.logs = []

    def _start(self, argv, env=None, log=None):
        out = subprocess.DEVNULL
        if log:
            out = open(os.path.join(self.dir, log), "wb")  # pylint: disable=consider-using-with
            self.logs.append(out)
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(Broker):
    """redis-server without persistence; .port and .client()."""

    def __init__(self):
        super().__init__()
        import redis

        self.port = free_port()
        proc = self._start([_find("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                            "--save", "", "--dir", self.dir])
        self.client = redis.Redis(port=self.port)
        try:
            _wait("redis-server", self.client.ping, proc, 10)
        except Exception:
            self.stop()
            raise


class RabbitMQServer(Broker):
    """A RabbitMQ node (no plugins) with guest/guest allowed on loopback; .url."""

    def __init__(self):
        super().__init__()
        import pika

        server = _find("rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server")
        amqp_port, epmd_port, dist_port = free_port(), free_port(), free_port()
        cookie = os.path.join(self.dir, ".erlang.cookie")
        with open(cookie, "w", encoding="ascii") as f:
            f.write("swellsdktestcookie")
        os.chmod(cookie, 0o400)
        conf = os.path.join(self.dir, "rabbitmq.conf")
        with open(conf, "w", encoding="ascii") as f:
            f.write("listeners.tcp.1 = 127.0.0.1:%d\nloopback_users = none\n" % amqp_port)
        plugins = os.path.join(self.dir, "enabled_plugins")
        with open(plugins, "w", encoding="ascii") as f:
            f.write("[].\n")
        env = dict(os.environ, ERL_EPMD_PORT=str(epmd_port), ERL_EPMD_ADDRESS="127.0.0.1", HOME=self.dir)
        self._start([_find("epmd"), "-port", str(epmd_port), "-address", "127.0.0.1"], env)
        env.update(
            RABBITMQ_NODENAME="swellsdk%d@localhost" % amqp_port,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(amqp_port),
            RABBITMQ_DIST_PORT=str(dist_port),
            RABBITMQ_CONFIG_FILE=conf,
            RABBITMQ_ENABLED_PLUGINS_FILE=plugins,
            RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
            RABBITMQ_LOGS="-",
            RABBITMQ_PID_FILE=os.path.join(self.dir, "rabbit.pid"),
            # Exec the Erlang VM in place of the wrapper script (so SIGTERM
            # reaches it) and never let it spawn a detached epmd.
            RUNNING_UNDER_SYSTEMD="true",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-start_epmd false",
        )
        proc = self._start([server], env, log="rabbitmq.log")
        self.url = "amqp://guest:guest@127.0.0.1:%d/" % amqp_port

        def ready():
            pika.BlockingConnection(pika.URLParameters(self.url + "?connection_attempts=1")).close()

        try:
            _wait("rabbitmq-server", ready, proc, 90)
        except Exception as e:
            with open(os.path.join(self.dir, "rabbitmq.log"), "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            self.stop()
            raise RuntimeError("%s; log tail:\n%s" % (e, tail)) from e
