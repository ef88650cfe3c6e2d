module github.com/snapshot-job/snapshot-job

go 1.26.0

require github.com/kelseyhightower/envconfig v1.4.0

require (
	github.com/klauspost/compress v1.20.4 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
