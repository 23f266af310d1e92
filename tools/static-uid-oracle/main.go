// Test oracle for kubelet-rs: computes static pod UIDs with upstream 1.20.2's own code path
// (decode, default, convert to the internal type, hash.DeepHashObject), and dumps the shape
// of the internal core.Pod type that the Rust port prints. Built inside Debian's kubernetes
// source tree by scripts/static-uid-oracle.sh; never shipped.
package main

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/davecgh/go-spew/spew"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	api "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	"k8s.io/kubernetes/pkg/util/hash"
)

type field struct {
	Name   string `json:"n"`
	JSON   string `json:"j,omitempty"`
	Type   string `json:"t"`
	Inline bool   `json:"i,omitempty"`
	NoV1   bool   `json:"x,omitempty"`
}

type typ struct {
	Kind   string  `json:"k"`
	Elem   string  `json:"e,omitempty"`
	Key    string  `json:"key,omitempty"`
	Fields []field `json:"f,omitempty"`
}

var types = map[string]typ{}
var seen = map[string]reflect.Type{}

func walk(ct, vt reflect.Type) string {
	name := ct.String()
	if prev, ok := seen[name]; ok {
		if prev != ct {
			fmt.Fprintf(os.Stderr, "two types print as %s\n", name)
			os.Exit(2)
		}
		return name
	}
	seen[name] = ct
	t := typ{Kind: ct.Kind().String()}
	types[name] = t
	elem := func(v reflect.Type) reflect.Type {
		if v == nil {
			return nil
		}
		return v.Elem()
	}
	switch ct.Kind() {
	case reflect.Ptr, reflect.Slice, reflect.Array:
		t.Elem = walk(ct.Elem(), elem(vt))
	case reflect.Map:
		var vk reflect.Type
		if vt != nil {
			vk = vt.Key()
		}
		t.Key = walk(ct.Key(), vk)
		t.Elem = walk(ct.Elem(), elem(vt))
	case reflect.Struct:
		for i := 0; i < ct.NumField(); i++ {
			cf := ct.Field(i)
			f := field{Name: cf.Name}
			var vft reflect.Type
			tag := cf.Tag.Get("json")
			if vt != nil && vt.Kind() == reflect.Struct {
				if vf, ok := vt.FieldByName(cf.Name); ok && len(vf.Index) == 1 {
					vft = vf.Type
					tag = vf.Tag.Get("json")
				} else if vt != ct {
					f.NoV1 = true
				}
			}
			j := strings.Split(tag, ",")[0]
			// Embedded without a JSON name of its own, or marked inline: the parent's keys.
			f.Inline = strings.Contains(tag, ",inline") || (cf.Anonymous && j == "")
			if j == "" && !f.Inline && cf.PkgPath == "" {
				j = strings.ToLower(cf.Name[:1]) + cf.Name[1:]
			}
			f.JSON = j
			if cf.PkgPath == "" && vft == nil && vt == nil {
				vft = cf.Type // metav1 and friends carry their own tags
			}
			f.Type = walk(cf.Type, vft)
			t.Fields = append(t.Fields, f)
		}
	}
	types[name] = t
	return name
}

func decode(data []byte) (*api.Pod, error) {
	js, err := utilyaml.ToJSON(data)
	if err != nil {
		return nil, err
	}
	obj, err := runtime.Decode(legacyscheme.Codecs.UniversalDecoder(), js)
	if err != nil {
		return nil, err
	}
	pod, ok := obj.(*api.Pod)
	if !ok {
		return nil, fmt.Errorf("not a pod: %T", obj)
	}
	return pod, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: static-uid-oracle schema | uid [-dump] FILE...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "schema":
		root := walk(reflect.TypeOf(&api.Pod{}), reflect.TypeOf(&v1.Pod{}))
		names := make([]string, 0, len(types))
		for n := range types {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Printf("{\"root\":%q,\"types\":{\n", root)
		for i, n := range names {
			b, _ := json.Marshal(types[n])
			sep := ","
			if i == len(names)-1 {
				sep = ""
			}
			fmt.Printf("%q:%s%s\n", n, b, sep)
		}
		fmt.Println("}}")
	case "uid":
		dump := false
		for _, f := range os.Args[2:] {
			if f == "-dump" {
				dump = true
				continue
			}
			data, err := ioutil.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			pod, err := decode(data)
			if err != nil {
				fmt.Printf("error %s: %v\n", f, err)
				continue
			}
			h := md5.New()
			hash.DeepHashObject(h, pod)
			fmt.Printf("%s %s\n", hex.EncodeToString(h.Sum(nil)), f)
			if dump {
				printer := spew.ConfigState{Indent: " ", SortKeys: true, DisableMethods: true, SpewKeys: true}
				fmt.Println(printer.Sprintf("%#v", pod))
			}
		}
	}
}
