"""callboard: a job runtime for trio."""
