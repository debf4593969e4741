"""Pure statistics: no clock, no files, no printing, no pytest."""
