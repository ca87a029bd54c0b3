"""dndx: cluster counting for helium drift chambers."""
