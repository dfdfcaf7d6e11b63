"""Where lakepipe runs: the SparkSession factory, Maven-resolved jars, the local broker, Kafka admin."""
