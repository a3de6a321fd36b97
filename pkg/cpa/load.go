package cpa

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Load reads the config file, lets environment variables named exactly like
// a top-level key override it, applies CPA's defaults and validates. path
// empty means $configPath, else /config.yaml; a missing default file just
// means "environment only".
//
// As in CPA:
//   - keys in the file match case-insensitively at every level (`MaxReplicas`
//     is `maxReplicas`); an exact match wins;
//   - a key from the file is laid over the defaults, so `apiConfig: {port:
//     6000}` keeps the other apiConfig defaults;
//   - an environment variable replaces its key's whole value: a string key
//     takes the raw value (namespace "123" stays a string), any other is
//     parsed as YAML or JSON, and keys missing from that value are zero, not
//     the file's nor the defaults (`apiConfig='{"port": 6000}'` leaves the
//     API disabled, because `enabled` is then false).
//
// Unlike CPA, keys that match nothing, and two keys that match the same
// setting, are errors naming the key's full path; every error says whether
// it came from the file or from which environment variable.
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultConfigPath
		if p, ok := lookupEnv(ConfigPathEnv); ok && p != "" {
			path, explicit = p, true
		}
	}
	src := sources{file: "cpa config " + path, env: map[string]string{}}
	doc, found, err := readDoc(path, explicit)
	if err != nil {
		return nil, err
	}
	if !found {
		src.file = fmt.Sprintf("cpa config (no file at %s; environment only)", path)
	}
	fields := configFields()
	fileDoc, fileErr := canonicalObject(doc, reflect.TypeFor[Config](), "")
	if fileErr != nil {
		fileErr = prefixEach(src.file, fileErr)
	}
	envDoc, envErr := readEnv(fields, lookupEnv, src.env)
	if err := errors.Join(fileErr, envErr); err != nil {
		return nil, err
	}
	cfg, err := decode(fileDoc, envDoc, src)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, src.attribute(err)
	}
	return cfg, nil
}

// sources says where each top-level key came from, for error messages.
type sources struct {
	file string
	// env maps each key set by an environment variable to its raw value.
	env map[string]string
}

func (s sources) envPrefix(key string) string {
	return fmt.Sprintf("env %s=%q", key, truncate(s.env[key], 200))
}

// attribute prefixes each problem with where its keys came from: the
// environment variables that set them, else the file.
func (s sources) attribute(err error) error {
	var out []error
	for _, e := range leaves(err) {
		var ke *KeyError
		var from []string
		if errors.As(e, &ke) {
			for _, k := range ke.Keys {
				if _, ok := s.env[k]; ok {
					from = append(from, s.envPrefix(k))
				}
			}
		}
		if len(from) == 0 {
			from = []string{s.file}
		}
		out = append(out, fmt.Errorf("%s: %w", strings.Join(from, ", "), e))
	}
	return errors.Join(out...)
}

// prefixEach prefixes every problem in err with prefix.
func prefixEach(prefix string, err error) error {
	var out []error
	for _, e := range leaves(err) {
		out = append(out, fmt.Errorf("%s: %w", prefix, e))
	}
	return errors.Join(out...)
}

// leaves flattens errors.Join trees; any other error (a KeyError
// included) is one leaf.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// readDoc decodes the file into key → value; found is false when the
// default file is absent.
func readDoc(path string, mustExist bool) (doc map[string]any, found bool, err error) {
	doc = map[string]any{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return doc, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read cpa config: %w", err)
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, false, fmt.Errorf("cpa config %s: not a YAML/JSON map of keys: %w", path, err)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	return doc, true, nil
}

// configField is a top-level key: its index in Config and its type.
type configField struct {
	index int
	typ   reflect.Type
}

// configFields maps each top-level JSON key to its field.
func configFields() map[string]configField {
	keys := map[string]configField{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		keys[jsonName(t.Field(i))] = configField{index: i, typ: t.Field(i).Type}
	}
	return keys
}

// readEnv reads the environment variables named exactly like a key (as CPA
// does, case-sensitively) into key → value, noting each raw value in raw.
func readEnv(fields map[string]configField, lookupEnv func(string) (string, bool), raw map[string]string) (map[string]any, error) {
	doc := map[string]any{}
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(fields)) {
		v, ok := lookupEnv(key)
		if !ok {
			continue
		}
		raw[key] = v
		prefix := fmt.Sprintf("env %s=%q", key, truncate(v, 200))
		typ := fields[key].typ
		if typ.Kind() == reflect.String {
			doc[key] = v
			continue
		}
		var parsed any
		if err := yaml.Unmarshal([]byte(v), &parsed); err != nil {
			errs = append(errs, fmt.Errorf("%s: not YAML/JSON: %w", prefix, err))
			continue
		}
		c, err := canonical(parsed, typ, key)
		if err != nil {
			errs = append(errs, prefixEach(prefix, err))
			continue
		}
		doc[key] = c
	}
	return doc, errors.Join(errs...)
}

// decode builds the Config: defaults, then each file key laid over its
// default, then each environment key replacing its field whole. Every
// error names the key and where it came from.
func decode(fileDoc, envDoc map[string]any, src sources) (*Config, error) {
	cfg := NewConfig()
	v := reflect.ValueOf(cfg).Elem()
	fields := configFields()
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(fileDoc)) {
		if _, overridden := envDoc[key]; overridden {
			continue
		}
		if err := decodeInto(v.Field(fields[key].index), fileDoc[key], key, false); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src.file, err))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(envDoc)) {
		if err := decodeInto(v.Field(fields[key].index), envDoc[key], key, true); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src.envPrefix(key), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.APIConfig == nil { // `apiConfig: null`
		cfg.APIConfig = NewConfig().APIConfig
	}
	return cfg, nil
}

// decodeInto decodes value (canonical keys) into field: over its current
// value, or into a fresh zero value when replace is set.
func decodeInto(field reflect.Value, value any, key string, replace bool) error {
	b, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("%s: re-encode: %w", key, err)
	}
	dst := field.Addr()
	if replace {
		dst = reflect.New(field.Type())
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst.Interface()); err != nil {
		return describeDecodeError(key, err)
	}
	field.Set(dst.Elem())
	return nil
}

// describeDecodeError names the full path of a value of the wrong type.
func describeDecodeError(key string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		path := key
		if te.Field != "" {
			path = key + "." + te.Field
		}
		return fmt.Errorf("%s: got a %s, want %s", path, te.Value, te.Type)
	}
	return fmt.Errorf("%s: %w", key, err)
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// canonical rewrites the keys of v (decoded YAML/JSON) to the JSON names
// of type t, matching them as encoding/json does (exact, else
// case-insensitive), and reports keys that match nothing or match the same
// field twice, with their full path (`kubernetesMetricSpecs[0].rsrc`).
// Values of types that decode themselves (quantities, times) are left as
// they are.
func canonical(v any, t reflect.Type, path string) (any, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return v, nil
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return v, nil // a type error, reported by the decoder with its path
		}
		return canonicalObject(m, t, path)
	case reflect.Slice, reflect.Array:
		list, ok := v.([]any)
		if !ok {
			return v, nil
		}
		out := make([]any, len(list))
		var errs []error
		for i, e := range list {
			c, err := canonical(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			errs = append(errs, err)
			out[i] = c
		}
		return out, errors.Join(errs...)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return v, nil
		}
		out := make(map[string]any, len(m))
		var errs []error
		for _, k := range slices.Sorted(maps.Keys(m)) {
			c, err := canonical(m[k], t.Elem(), join(path, k))
			errs = append(errs, err)
			out[k] = c
		}
		return out, errors.Join(errs...)
	}
	return v, nil
}

// canonicalObject is canonical for a struct type: m's keys become t's
// field names.
func canonicalObject(m map[string]any, t reflect.Type, path string) (map[string]any, error) {
	fields := structFields(t)
	out := make(map[string]any, len(m))
	from := map[string]string{} // canonical name → key that set it
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		f, ok := matchField(fields, k)
		if !ok {
			errs = append(errs, fmt.Errorf("unknown key %q", join(path, k)))
			continue
		}
		if prev, dup := from[f.name]; dup {
			errs = append(errs, fmt.Errorf("keys %q and %q both set %q (keys match case-insensitively); keep one", join(path, prev), join(path, k), join(path, f.name)))
			continue
		}
		from[f.name] = k
		c, err := canonical(m[k], f.typ, join(path, f.name))
		errs = append(errs, err)
		out[f.name] = c
	}
	return out, errors.Join(errs...)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// namedField is a struct field by its JSON name.
type namedField struct {
	name string
	typ  reflect.Type
}

// structFields lists t's JSON fields, embedded untagged structs flattened
// as encoding/json does.
func structFields(t reflect.Type) []namedField {
	var out []namedField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && tagName(tag) == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, structFields(ft)...)
				continue
			}
		}
		out = append(out, namedField{name: jsonName(f), typ: f.Type})
	}
	return out
}

// matchField finds key among fields: exactly, else ignoring case.
func matchField(fields []namedField, key string) (namedField, bool) {
	for _, f := range fields {
		if f.name == key {
			return f, true
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, key) {
			return f, true
		}
	}
	return namedField{}, false
}

func tagName(tag string) string {
	name, _, _ := strings.Cut(tag, ",")
	return name
}

func jsonName(f reflect.StructField) string {
	if name := tagName(f.Tag.Get("json")); name != "" {
		return name
	}
	return f.Name
}
