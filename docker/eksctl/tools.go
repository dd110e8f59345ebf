// Pins eksctl for the Airflow image: go.mod names the release, go.sum holds the checksum of
// eksctl and of every module it is built from, so the image builds exactly this eksctl or fails
// (go verifies each download against go.sum; see docker/Dockerfile).
//go:build tools

package tools

import _ "github.com/weaveworks/eksctl/cmd/eksctl"
