package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// InstallCRDs applies every CustomResourceDefinition in the YAML files of
// dir (as generated into config/crd/bases) and waits until each is
// Established, so tests can create objects of those kinds at once.
func (e *Env) InstallCRDs(ctx context.Context, dir string) error {
	return e.InstallCRDsFS(ctx, os.DirFS(dir))
}

// InstallCRDsFS is InstallCRDs over a file system (e.g. an embed.FS),
// reading every *.yaml at its root.
func (e *Env) InstallCRDsFS(ctx context.Context, fsys fs.FS) error {
	cs, err := apiextensionsclient.NewForConfig(e.RESTConfig)
	if err != nil {
		return fmt.Errorf("apiextensions client: %w", err)
	}
	files, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return fmt.Errorf("list CRD files: %w", err)
	}
	if len(files) == 0 {
		return fmt.Errorf("no CRD files found")
	}
	var names []string
	for _, f := range files {
		crds, err := readCRDs(fsys, f)
		if err != nil {
			return err
		}
		for _, crd := range crds {
			if err := applyCRD(ctx, cs, crd); err != nil {
				return err
			}
			names = append(names, crd.Name)
		}
	}
	return pollUntil(ctx, func(ctx context.Context) error {
		for _, n := range names {
			crd, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !established(crd) {
				return fmt.Errorf("CRD %s not established yet", n)
			}
		}
		return nil
	})
}

func readCRDs(fsys fs.FS, path string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	b, err := fs.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*apiextensionsv1.CustomResourceDefinition
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := dec.Decode(crd); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if crd.Kind == "CustomResourceDefinition" {
			out = append(out, crd)
		}
	}
}

func applyCRD(ctx context.Context, cs apiextensionsclient.Interface, crd *apiextensionsv1.CustomResourceDefinition) error {
	api := cs.ApiextensionsV1().CustomResourceDefinitions()
	_, err := api.Create(ctx, crd, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cur, gerr := api.Get(ctx, crd.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("get CRD %s: %w", crd.Name, gerr)
		}
		crd.ResourceVersion = cur.ResourceVersion
		_, err = api.Update(ctx, crd, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("apply CRD %s: %w", crd.Name, err)
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}
