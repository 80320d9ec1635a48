"""Operations: doctor, metrics, logs, migrations."""
