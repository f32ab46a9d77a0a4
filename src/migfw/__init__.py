"""migfw: measure whether a VM-level firewall stays up while the VM is live-migrated."""

__version__ = "0.1.0"
