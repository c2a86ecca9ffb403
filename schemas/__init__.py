"""The contracts between the gateway and the consumers.

- ``avro/<family>.v<N>.avsc``: event schemas, one file per version; ``codec`` encodes with the newest
  version and decodes any known one.
- ``clickhouse/*.sql``: the table DDL the consumers write and the gateway and analysts read.
"""
