"""The worker side: RQ jobs that take queued events and deliver them."""
