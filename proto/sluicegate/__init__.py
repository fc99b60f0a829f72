"""sluicegate's protos, by version."""
