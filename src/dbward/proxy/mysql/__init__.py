"""The MySQL/MariaDB side of the proxy: the same identity, policy, masking, approvals and
audit as for PostgreSQL, over the MySQL client/server protocol."""
