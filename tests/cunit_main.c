/* Shared main() for every CUnit program: each tests/test_<unit>.c defines
 * cnode_test_register(), which adds its suites to the registry. */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <ei.h>

void cnode_test_register(void);

int
main(void)
{
    /* unbuffered, so that after a sanitizer abort the output still ends with
     * the "Test: name ..." line of the test that aborted (run-all.sh names it) */
    setvbuf(stdout, NULL, _IONBF, 0);
    if (ei_init() != 0 || CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    cnode_test_register();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    /* a suite whose set-up failed ran none of its tests: that fails too */
    unsigned failed = CU_get_number_of_tests_failed() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
