package brokersource

import (
	"errors"
	"regexp"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Broker errors are reduced before they reach status, conditions and events.
//
// A ScalerConfig's address is its author's choice, and the connection runs
// with Swell's network identity, so the "broker" may be any internal
// service. Client libraries quote what a server that does not speak their
// protocol answered (go-redis: `redis: invalid reply: "HTTP/1.1 400 Bad
// Request\r\n"`), which would copy the first bytes of that service's answer
// into an object the author reads. Describe keeps every error that only
// says what failed (connection refused, timeout, DNS, TLS, an egress
// refusal, a missing Secret) and replaces, from the point where the library
// starts quoting, an error that carries the server's bytes by its kind.

// quotedReply is a marker with which a client library starts an error
// quoting a server's answer, and the kind that replaces it.
type quotedReply struct{ marker, kind string }

const (
	notRedis = "the broker answered with an invalid reply (not a Redis server?)"
	notKafka = "the broker answered with an invalid reply (not a Kafka broker? the port may serve HTTP or TLS)"
	notNATS  = "the server answered with an invalid reply (not a NATS server?)"
	notAMQP  = "the broker answered with an invalid reply (not an AMQP server?)"
)

var quotedReplies = []quotedReply{
	{"redis: invalid reply", notRedis},
	{"redis: can't parse", notRedis},
	{"expected digit or CRLF", notRedis},
	{"invalid large response size", notKafka},
	// pkg/source/redis quoting a reply of a shape it did not expect.
	{"unexpected reply", "the broker answered with an unexpected reply"},
	{"nats: expected '", notNATS},
	// amqp091's frame (501) and syntax (502) errors: what it makes of an
	// answer that is not AMQP.
	{"Exception (501)", notAMQP},
	{"Exception (502)", notAMQP},
}

// redisCode is the error code that starts a Redis error reply (WRONGPASS,
// NOAUTH, WRONGTYPE, ...); nothing after it is shown.
var redisCode = regexp.MustCompile(`^[A-Z][A-Z_]{1,19}$`)

// Describe is err's message as status, conditions and events may carry it:
// unchanged unless it quotes a server's answer, in which case the quote is
// replaced by what kind of answer it was. "" for nil.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	if rerr, ok := redisReply(err); ok {
		return cutAt(msg, rerr.Error(), redisReplyKind(rerr.Error()))
	}
	for _, q := range quotedReplies {
		if strings.Contains(msg, q.marker) {
			return cutAt(msg, q.marker, q.kind)
		}
	}
	return msg
}

// redisReply finds a Redis error reply (a line the server sent after "-")
// in err's chain; redis.Nil (no such key) is not one.
func redisReply(err error) (redis.Error, bool) {
	var rerr redis.Error
	if !errors.As(err, &rerr) || errors.Is(err, redis.Nil) {
		return nil, false
	}
	return rerr, true
}

// redisReplyKind says what a Redis error reply means, naming only its code.
func redisReplyKind(reply string) string {
	code, _, _ := strings.Cut(reply, " ")
	switch {
	case code == "WRONGPASS" || code == "NOAUTH" || strings.HasPrefix(reply, "ERR invalid password") || strings.HasPrefix(reply, "ERR AUTH"):
		return "authentication failed: the broker refused the credentials (Redis " + code + ")"
	case code == "NOPERM":
		return "permission denied: the broker's ACL does not allow the user this command or key (Redis NOPERM)"
	case redisCode.MatchString(code):
		return "the broker answered with an error reply (Redis " + code + ")"
	}
	return "the broker answered with an error reply"
}

// cutAt keeps msg up to marker (Swell's own context: object, broker,
// address) and puts kind in place of the rest; kind alone when marker is
// not in msg.
func cutAt(msg, marker, kind string) string {
	i := strings.Index(msg, marker)
	if i < 0 {
		return kind
	}
	return msg[:i] + kind
}
