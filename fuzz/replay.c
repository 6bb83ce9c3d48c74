/* Runs fuzz_model.c's LLVMFuzzerTestOneInput on files, without libFuzzer:
 * `make check` replays fuzz/corpus this way (under valgrind and the
 * sanitizers too, in .ci/run), and a crash found by fuzz/run can be replayed
 * under gdb with `fuzz/replay crash-<hash>`.
 *
 *   fuzz/replay [FILE|DIR]...   default: $srcdir/fuzz/corpus
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replayed;

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *data = NULL;
  size_t size = 0, cap = 0, n;

  if (f == NULL) {
    perror(path);
    return 1;
  }
  for (;;) {
    if (size == cap) {
      cap = cap ? cap * 2 : 4096;
      data = realloc(data, cap);
      if (data == NULL)
        abort();
    }
    n = fread(data + size, 1, cap - size, f);
    if (n == 0)
      break;
    size += n;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(data, size); /* aborts on any difference */
  free(data);
  replayed++;
  return 0;
}

static int replay_path(const char *path) {
  struct stat st;
  struct dirent **names;
  int n, status = 0;

  if (stat(path, &st) != 0) {
    perror(path);
    return 1;
  }
  if (!S_ISDIR(st.st_mode))
    return replay_file(path);
  n = scandir(path, &names, NULL, alphasort);
  if (n < 0) {
    perror(path);
    return 1;
  }
  for (int i = 0; i < n; i++) {
    if (names[i]->d_name[0] != '.') {
      char full[4096];
      snprintf(full, sizeof full, "%s/%s", path, names[i]->d_name);
      status |= replay_file(full);
    }
    free(names[i]);
  }
  free(names);
  return status;
}

int main(int argc, char **argv) {
  int status = 0;

  if (argc < 2) {
    const char *srcdir = getenv("srcdir");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fuzz/corpus", srcdir ? srcdir : ".");
    status = replay_path(dir);
  }
  for (int i = 1; i < argc; i++)
    status |= replay_path(argv[i]);
  printf("fuzz/replay: %d inputs replayed against the model, %s\n", replayed,
         status == 0 ? "no difference" : "unreadable files");
  return status;
}
