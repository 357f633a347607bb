"""Reports of a sweep: records grouped per configuration, uncertainty, summary md/csv/png/html."""
