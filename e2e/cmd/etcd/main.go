// Command etcd is upstream etcd's server main: etcd's own server/main.go
// cannot be installed with `go install` because its module replaces its
// siblings with relative paths.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
