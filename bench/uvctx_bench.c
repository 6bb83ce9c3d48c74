/* Placeholder: the benchmark suite is being written. */
int main(void) { return 0; }
