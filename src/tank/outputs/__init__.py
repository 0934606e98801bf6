"""Where a pulled image goes: an OCI image layout, a docker-archive, a root filesystem."""
