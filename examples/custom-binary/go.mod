module github.com/sluicepg/sluice/examples/custom-binary

go 1.26.8

require (
	github.com/pganalyze/pg_query_go/v6 v6.2.5
	github.com/sluicepg/sluice v0.0.0
)

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	google.golang.org/protobuf v1.33.0 // indirect
)

replace github.com/sluicepg/sluice => ../..
