package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BrokerAuth makes the brokers an Env starts require credentials, for
// tests of the paths that carry them (and of where they must never show
// up). Every credential goes into a config file in the environment's
// directory, never onto a command line, so no process listing or
// component log shows it. The zero value (and a nil Options.Auth) leaves
// every broker open, as before.
type BrokerAuth struct {
	// RedisPassword is the default user's password (requirepass).
	RedisPassword string
	// RedisUsers are ACL users (name → password) allowed every command
	// on every key and channel.
	RedisUsers map[string]string
	// RabbitMQUser and RabbitMQPassword replace guest/guest as RabbitMQ's
	// default user (an administrator, so the management API accepts it
	// too); Env.RabbitMQURL carries them.
	RabbitMQUser, RabbitMQPassword string
	// NATSUsers (name → password) are the only clients NATS accepts.
	NATSUsers map[string]string
	// KafkaUsers turn SASL on for the Kafka broker (kfake): only these
	// users, each with its mechanism, may connect.
	KafkaUsers []SASLUser
}

// SASLUser is one Kafka SASL user.
type SASLUser struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism      string
	User, Password string
}

func (a *BrokerAuth) redisPassword() string {
	if a == nil {
		return ""
	}
	return a.RedisPassword
}

// redisConfig writes the Redis config file holding the credentials and
// returns its path ("" when Redis is open).
func (a *BrokerAuth) redisConfig(dir string) (string, error) {
	if a == nil || (a.RedisPassword == "" && len(a.RedisUsers) == 0) {
		return "", nil
	}
	var b strings.Builder
	if a.RedisPassword != "" {
		fmt.Fprintf(&b, "requirepass %s\n", a.RedisPassword)
	}
	for _, name := range sortedKeys(a.RedisUsers) {
		fmt.Fprintf(&b, "user %s on >%s ~* &* +@all\n", name, a.RedisUsers[name])
	}
	path := filepath.Join(dir, "redis-auth.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("redis auth config: %w", err)
	}
	return path, nil
}

// rabbitMQConfig is the rabbitmq.conf lines of the default user.
func (a *BrokerAuth) rabbitMQConfig() string {
	if a == nil || a.RabbitMQUser == "" {
		return ""
	}
	return fmt.Sprintf("default_user = %s\ndefault_pass = %s\ndefault_user_tags.administrator = true\n", a.RabbitMQUser, a.RabbitMQPassword)
}

func (a *BrokerAuth) rabbitMQUser() (user, password string) {
	if a == nil || a.RabbitMQUser == "" {
		return "guest", "guest"
	}
	return a.RabbitMQUser, a.RabbitMQPassword
}

// natsConfig writes the nats-server config file of the users and returns
// its path ("" when NATS is open).
func (a *BrokerAuth) natsConfig(dir string) (string, error) {
	if a == nil || len(a.NATSUsers) == 0 {
		return "", nil
	}
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, name := range sortedKeys(a.NATSUsers) {
		fmt.Fprintf(&b, "    {user: %q, password: %q}\n", name, a.NATSUsers[name])
	}
	b.WriteString("  ]\n}\n")
	path := filepath.Join(dir, "nats-auth.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("nats auth config: %w", err)
	}
	return path, nil
}

// kafkaOpts are the kfake options of the SASL users.
func (a *BrokerAuth) kafkaOpts() []kfake.Opt {
	if a == nil || len(a.KafkaUsers) == 0 {
		return nil
	}
	opts := []kfake.Opt{kfake.EnableSASL()}
	for _, u := range a.KafkaUsers {
		opts = append(opts, kfake.Superuser(u.Mechanism, u.User, u.Password))
	}
	return opts
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
