package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"k8s.io/utils/clock"
)

// notifyKey is the server setting holding the keyspace-notification flags.
const notifyKey = "notify-keyspace-events"

// keyspaceChannel is where Redis publishes the commands touching key in db:
// lpush, rpush, lpop, rpop, brpop (as rpop), lmove, del… for a list; xadd,
// xtrim, xdel, xgroup-*, xclaim… for a stream.
func keyspaceChannel(db int, key string) string {
	return "__keyspace@" + strconv.Itoa(db) + "__:" + key
}

// enableNotifications adds the K (keyspace channel), l (lists) and t
// (streams) flags to the server's notify-keyspace-events, keeping the flags
// already set.
func (c *Client) enableNotifications(ctx context.Context) error {
	cur, err := c.notifyFlags(ctx)
	if err != nil {
		return err
	}
	want := cur
	for _, f := range "Klt" {
		if !hasFlag(want, f) {
			want += string(f)
		}
	}
	if want == cur {
		return nil
	}
	if err := c.rdb.ConfigSet(ctx, notifyKey, want).Err(); err != nil {
		return fmt.Errorf("redis CONFIG SET %s %q: %w", notifyKey, want, err)
	}
	return nil
}

func (c *Client) notifyFlags(ctx context.Context) (string, error) {
	m, err := c.rdb.ConfigGet(ctx, notifyKey).Result()
	if err != nil {
		return "", fmt.Errorf("redis CONFIG GET %s: %w", notifyKey, err)
	}
	return m[notifyKey], nil
}

// DefaultNotifyRecheck is how long a read of the server's
// notify-keyspace-events is trusted when Config.NotifyRecheck is 0.
const DefaultNotifyRecheck = 5 * time.Minute

// flagsCache keeps the server's notify-keyspace-events for every Watch of
// a Client, so a thousand watched queues whose subscription keeps failing
// (notifications off) ask the server once per recheck period, not once per
// queue and retry. A new connection to the server (it may have restarted
// with other settings) forgets the value.
type flagsCache struct {
	clock   clock.PassiveClock
	recheck time.Duration

	mu sync.Mutex
	// read: flags or refused is known, as of at.
	read    bool
	at      time.Time
	flags   string
	refused bool
	// reads counts CONFIG GETs sent, for tests.
	reads int
}

// get returns the flags, asking the server when the cached read is older
// than recheck; refused reports a server that does not answer CONFIG GET
// (managed services often refuse it). One caller asks at a time and the
// others wait for its answer.
func (f *flagsCache) get(ctx context.Context, c *Client) (flags string, refused bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.read && f.clock.Since(f.at) < f.recheck {
		return f.flags, f.refused
	}
	f.reads++
	flags, err := c.notifyFlags(ctx)
	if err != nil && ctx.Err() != nil {
		// The caller gave up; that says nothing about the server.
		return "", true
	}
	f.read, f.at, f.flags, f.refused = true, f.clock.Now(), flags, err != nil
	return f.flags, f.refused
}

// forget drops the cached read: the next Watch asks the server.
func (f *flagsCache) forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read = false
}

// hasFlag reports whether flags enable f; "A" stands for every data-type
// class (g$lshzxetd), so it covers l and t.
func hasFlag(flags string, f rune) bool {
	if strings.ContainsRune(flags, f) {
		return true
	}
	return f != 'K' && f != 'E' && strings.ContainsRune(flags, 'A')
}

// checkNotifications fails when the server is known not to publish the
// events Watch needs. A server refusing CONFIG GET (managed services often
// do) is trusted to be configured. When the Config asks for notifications
// and a later read finds them off (the server restarted with its own
// settings), they are turned on again.
func (s *queueSource) checkNotifications(ctx context.Context) error {
	flags, refused := s.c.flags.get(ctx, s.c)
	if refused {
		return nil
	}
	class := 'l'
	if s.ref.Group != "" {
		class = 't'
	}
	if hasFlag(flags, 'K') && hasFlag(flags, class) {
		return nil
	}
	if s.c.cfg.KeyspaceNotifications {
		err := s.c.enableNotifications(ctx)
		s.c.flags.forget()
		return err
	}
	return fmt.Errorf("redis keyspace notifications for %q are off (%s is %q, needs K and %c): set the KeyspaceNotifications option or configure the server", s.ref.Key, notifyKey, flags, class)
}

// Watch wakes the loop whenever a command touches the queue's key, using
// keyspace notifications (see Config.KeyspaceNotifications). It sends one
// wake as soon as the subscription is in place (and again after a
// reconnection), because changes before that moment were not seen. Stream
// consumption (XREADGROUP, XACK) publishes no event, so for streams push
// speeds up reaction to new entries and polling sees the rest.
//
// Watch returns nil when ctx ends, and an error when notifications are off
// on the server or the Client is closed.
func (s *queueSource) Watch(ctx context.Context, wake chan<- struct{}) error {
	if err := s.checkNotifications(ctx); err != nil {
		return err
	}
	w := &watcher{wake: wake}
	done, err := s.c.notes.add(ctx, s.channel, w)
	if err != nil {
		return err
	}
	defer s.c.notes.remove(s.channel, w)
	select {
	case <-ctx.Done():
		return nil
	case <-done:
		return errors.New("redis keyspace notifications: client closed")
	}
}

// watcher is one Watch call.
type watcher struct {
	wake chan<- struct{}
}

func (w *watcher) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// notifier shares one pub/sub connection among every Watch of a Client,
// so a thousand watched queues cost one connection, not a thousand.
type notifier struct {
	rdb *goredis.Client

	mu       sync.Mutex
	ps       *goredis.PubSub
	watchers map[string]map[*watcher]struct{}
	closed   chan struct{}
	isClosed bool
}

func newNotifier(rdb *goredis.Client) *notifier {
	return &notifier{rdb: rdb, watchers: map[string]map[*watcher]struct{}{}, closed: make(chan struct{})}
}

// add registers w for channel, subscribing when it is the channel's first
// watcher. The returned channel closes when the notifier closes.
func (n *notifier) add(ctx context.Context, channel string, w *watcher) (<-chan struct{}, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.isClosed {
		return nil, errors.New("redis keyspace notifications: client closed")
	}
	if n.ps == nil {
		n.ps = n.rdb.Subscribe(ctx)
		go n.dispatch(n.ps.ChannelWithSubscriptions())
	}
	set := n.watchers[channel]
	if set == nil {
		if err := n.ps.Subscribe(ctx, channel); err != nil {
			return nil, fmt.Errorf("redis SUBSCRIBE %q: %w", channel, err)
		}
		set = map[*watcher]struct{}{}
		n.watchers[channel] = set
	} else {
		// Already subscribed: this watcher missed nothing it could have
		// seen, but it has not measured yet either.
		w.notify()
	}
	set[w] = struct{}{}
	return n.closed, nil
}

func (n *notifier) remove(channel string, w *watcher) {
	n.mu.Lock()
	defer n.mu.Unlock()
	set := n.watchers[channel]
	delete(set, w)
	if len(set) > 0 || n.isClosed {
		return
	}
	delete(n.watchers, channel)
	_ = n.ps.Unsubscribe(context.Background(), channel)
}

// dispatch fans messages (and subscription confirmations) out to the
// watchers of their channel until the pub/sub closes.
func (n *notifier) dispatch(ch <-chan any) {
	for m := range ch {
		var channel string
		switch m := m.(type) {
		case *goredis.Message:
			channel = m.Channel
		case *goredis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			channel = m.Channel
		default:
			continue
		}
		n.wake(channel)
	}
}

func (n *notifier) wake(channel string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for w := range n.watchers[channel] {
		w.notify()
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.isClosed {
		return
	}
	n.isClosed = true
	close(n.closed)
	if n.ps != nil {
		_ = n.ps.Close()
	}
}

// ParseQueueRef reads the queue string of a QWorker: "<key>" is a list (as
// in QScaler) and "<key>?group=<group>" is a stream read by that consumer
// group. Only a "?group=" suffix is special, so any list name QScaler
// accepts keeps its meaning.
func ParseQueueRef(s string) (QueueRef, error) {
	key, group, found := strings.Cut(s, "?group=")
	ref := QueueRef{Key: key, Group: group}
	if found && group == "" {
		return ref, fmt.Errorf("redis queue %q: group after ?group= is empty", s)
	}
	return ref, ref.Validate()
}
