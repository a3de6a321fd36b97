package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
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
// do) is trusted to be configured.
func (s *queueSource) checkNotifications(ctx context.Context) error {
	flags, err := s.c.notifyFlags(ctx)
	if err != nil {
		return nil
	}
	class := 'l'
	if s.ref.Group != "" {
		class = 't'
	}
	if hasFlag(flags, 'K') && hasFlag(flags, class) {
		return nil
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
