SELECT kafka.high_watermark($1, $2)
