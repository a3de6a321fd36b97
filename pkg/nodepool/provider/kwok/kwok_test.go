package kwok

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestResizeAndDelete(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: map[string]string{"pool": "b"}}})
	p, err := New(Config{Client: client, NamePrefix: "gs", Labels: map[string]string{"pool": "a"}, Capacity: map[string]string{"cpu": "4", "memory": "8Gi", "pods": "110"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Resize(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if n, _ := p.Size(ctx); n != 3 {
		t.Fatalf("size after resize = %d, want 3", n)
	}
	list, _ := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "pool=a"})
	node := list.Items[0]
	if node.Annotations[Annotation] != "fake" || node.Labels[corev1.LabelHostname] != node.Name {
		t.Errorf("node %s: annotations %v labels %v", node.Name, node.Annotations, node.Labels)
	}
	if cpu := node.Status.Allocatable[corev1.ResourceCPU]; cpu.String() != "4" {
		t.Errorf("allocatable cpu = %s", cpu.String())
	}
	if err := p.Resize(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n, _ := p.Size(ctx); n != 3 {
		t.Fatalf("resize down deleted nodes: size %d", n)
	}
	if err := p.Delete(ctx, []*corev1.Node{&list.Items[0], &list.Items[0]}); err != nil {
		t.Fatalf("delete (twice the same node): %v", err)
	}
	if n, _ := p.Size(ctx); n != 2 {
		t.Fatalf("size after delete = %d, want 2", n)
	}
	if got := p.Template(); got["cpu"] != 4000 || got["memory"] != 8<<30 {
		t.Errorf("template = %v", got)
	}
}

func TestNewRejectsMissingLabels(t *testing.T) {
	if _, err := New(Config{Client: fake.NewClientset()}); err == nil {
		t.Fatal("New without labels succeeded")
	}
	if _, err := New(Config{Client: fake.NewClientset(), Labels: map[string]string{"a": "b"}, Capacity: map[string]string{"cpu": "lots"}}); err == nil {
		t.Fatal("New with a bad quantity succeeded")
	}
}
