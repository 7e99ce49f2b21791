"""Operations: one module per family (migrate, ...)."""
