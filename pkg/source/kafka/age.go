package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchMaxBytes bounds one age lookup's answer per partition: the record
// at the committed offset is all it needs (a broker still returns a first
// batch larger than this, so the lookup never comes back empty-handed).
const fetchMaxBytes = 64 << 10

// OldestRecord is the earliest timestamp among the records of topic at the
// given offsets by partition (the first record each partition's group has
// not consumed), one Fetch request per partition leader. The QWorker's
// source and the external scaler's wait target both take the oldest
// waiting record's age from it. Timestamps are the records' own
// (CreateTime, set by the producer, or LogAppendTime, set by the broker).
// It is a correction, so any failure (a Fetch the credentials may not
// make, a leader moving, a record deleted meanwhile) leaves that partition
// out, and no answer at all gives the zero time: age unknown.
func OldestRecord(ctx context.Context, cl *kgo.Client, topic string, from map[int32]int64) time.Time {
	if len(from) == 0 {
		return time.Time{}
	}
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		return time.Time{}
	}
	td, ok := md.Topics[topic]
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
		for _, ts := range fetchFirst(ctx, cl.Broker(int(leader)), topic, td.ID, parts) {
			if oldest.IsZero() || ts.Before(oldest) {
				oldest = ts
			}
		}
	}
	return oldest
}

// fetchFirst asks one broker for the records at parts' offsets and returns
// the timestamp of the first record of each partition that has one.
func fetchFirst(ctx context.Context, leader *kgo.Broker, topic string, id [16]byte, parts []kmsg.FetchRequestTopicPartition) []time.Time {
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MinBytes = 0, 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID, rt.Partitions = topic, id, parts
	req.Topics = []kmsg.FetchRequestTopic{rt}
	resp, err := req.RequestWith(ctx, leader)
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
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: off, Topic: topic, Partition: rp.Partition}, rp, kgo.DefaultDecompressor(), nil)
			if fp.Err == nil && len(fp.Records) > 0 {
				out = append(out, fp.Records[0].Timestamp)
			}
		}
	}
	return out
}
