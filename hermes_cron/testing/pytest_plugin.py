"""pytest plugin (entry point ``pytest11``): fixtures for hermes-cron plugin authors."""
