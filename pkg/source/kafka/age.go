package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchMaxBytes bounds one age lookup's answer per partition: the record
// at the committed offset is all it needs (a broker still returns a first
// batch larger than this, so the lookup never comes back empty-handed).
const fetchMaxBytes = 64 << 10

// oldestRecord is the earliest timestamp among the records at the given
// offsets (the first record each partition's group has not consumed), one
// Fetch request per partition leader. Timestamps are the records' own
// (CreateTime, set by the producer, or LogAppendTime, set by the broker).
// It is a correction, so any failure (a Fetch the credentials may not
// make, a leader moving, a record deleted meanwhile) leaves that partition
// out, and no answer at all gives the zero time: age unknown.
func (s *lagSource) oldestRecord(ctx context.Context, from map[int32]int64) time.Time {
	if len(from) == 0 {
		return time.Time{}
	}
	md, err := s.c.adm.Metadata(ctx, s.ref.Topic)
	if err != nil {
		return time.Time{}
	}
	td, ok := md.Topics[s.ref.Topic]
	if !ok || td.Err != nil {
		return time.Time{}
	}
	byLeader := map[int32][]kmsg.FetchRequestTopicPartition{}
	for p, off := range from {
		pd, ok := td.Partitions[p]
		if !ok || pd.Leader < 0 {
			continue
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, off, fetchMaxBytes
		rp.CurrentLeaderEpoch = pd.LeaderEpoch
		byLeader[pd.Leader] = append(byLeader[pd.Leader], rp)
	}
	var oldest time.Time
	for leader, parts := range byLeader {
		for _, ts := range s.fetchFirst(ctx, leader, td.ID, parts) {
			if oldest.IsZero() || ts.Before(oldest) {
				oldest = ts
			}
		}
	}
	return oldest
}

// fetchFirst asks one broker for the records at parts' offsets and returns
// the timestamp of the first record of each partition that has one.
func (s *lagSource) fetchFirst(ctx context.Context, leader int32, id [16]byte, parts []kmsg.FetchRequestTopicPartition) []time.Time {
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MinBytes = 0, 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID, rt.Partitions = s.ref.Topic, id, parts
	req.Topics = []kmsg.FetchRequestTopic{rt}
	resp, err := req.RequestWith(ctx, s.c.cl.Broker(int(leader)))
	if err != nil || resp.ErrorCode != 0 {
		return nil
	}
	want := map[int32]int64{}
	for _, p := range parts {
		want[p.Partition] = p.FetchOffset
	}
	var out []time.Time
	for _, t := range resp.Topics {
		for i := range t.Partitions {
			rp := &t.Partitions[i]
			off, ok := want[rp.Partition]
			if !ok || rp.ErrorCode != 0 {
				continue
			}
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: off, Topic: s.ref.Topic, Partition: rp.Partition}, rp, kgo.DefaultDecompressor(), nil)
			if fp.Err == nil && len(fp.Records) > 0 {
				out = append(out, fp.Records[0].Timestamp)
			}
		}
	}
	return out
}
