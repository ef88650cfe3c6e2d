module github.com/snapshot-job/snapshot-job

go 1.26

require github.com/kelseyhightower/envconfig v1.4.0
