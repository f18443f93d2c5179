"""Reports: paper-style tables (markdown / CSV / JSON) and before/after image grids."""
