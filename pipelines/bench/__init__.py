"""`make bench`: each stage against the strongest simple baseline, side by side on the same broker.

Figures are ratios (ours / baseline), so they hold on any machine; each is the median of 3 repeats after a
warm-up, alternating which side runs first, with the peak RSS of the Spark driver JVM.
- producer.py: P1 (simulator / Kafka's ProducerPerformance), P1b (simulator / bare confluent-kafka loop)
- stages.py: P2 bronze, P3 silver with quality, P4 gold, each against the simplest job doing the same move
- latency.py: L1, send -> readable in bronze, silver and gold at half the highest bronze rate
- growth.py: S1, cost per record as the backlog grows; files per table after a long run and after OPTIMIZE
- report.py: the table (stdout, bench-results/*.md and *.json) with the machine's cores, memory and versions
Benchmarks are not tests: they never fail the test suite.
"""
