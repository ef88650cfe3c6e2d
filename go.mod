module github.com/snapshot-job/snapshot-job

go 1.26

require (
	github.com/kelseyhightower/envconfig v1.4.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
)
