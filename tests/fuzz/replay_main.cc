// A main() for the fuzz targets in builds without libFuzzer (GCC, CI): runs the target on
// each file named, or on every file in each directory named (the checked-in corpus and
// the inputs that once crashed it). With libFuzzer (scripts/fuzz.sh) this file is not used.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool RunFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  // A copy of exactly `size` bytes, so ASan sees a read past the end of the input.
  std::vector<uint8_t> input(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(input.empty() ? nullptr : input.data(), input.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int ran = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    struct stat st;
    if (::stat(arg.c_str(), &st) != 0) {
      std::fprintf(stderr, "%s: no such file or directory\n", arg.c_str());
      return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
      ran += RunFile(arg);
      continue;
    }
    DIR* dir = ::opendir(arg.c_str());
    if (dir == nullptr) return 2;
    while (dirent* e = ::readdir(dir)) {
      const std::string path = arg + "/" + e->d_name;
      if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) ran += RunFile(path);
    }
    ::closedir(dir);
  }
  std::printf("%d inputs ran without a crash\n", ran);
  // An empty corpus would make this a test that checks nothing.
  return ran > 0 ? 0 : 1;
}
